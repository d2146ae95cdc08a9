"""`evaluate` (the `styleid eval` command as a function) and `evaluate_encoder` (the trainer's check)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import StyleIDError
from ..images import atomic_write
from ..metrics import mean_pairwise_cosine
from ..preprocess import CROPS
from .cache import CACHE_FOLDER, embed_with_cache
from .models import ModelSpec, build_embedder, parse_baseline
from .pairs import Pair, read_pairs
from .report import _clean, markdown_table, model_metrics, pair_scores, plot_roc, plot_similarity_vs_strength


class NonFiniteEmbeddings(StyleIDError):
    """A model produced NaN or inf embeddings (a diverged or damaged checkpoint)."""


def evaluate_encoder(encoder: Any, pairs: str | os.PathLike | Sequence[Pair], crop: str = "center",
                     batch_size: int = 32) -> dict[str, Any]:
    """Overall verification report of an in-memory encoder (used by the trainer's periodic eval), with
    per-split AUROC under "split_auroc" and the spread of the embeddings under "mean_cosine"."""
    pairs = read_pairs(pairs) if isinstance(pairs, (str, os.PathLike)) else list(pairs)
    files = list(dict.fromkeys([p.source for p in pairs] + [p.stylized for p in pairs]))
    # no_grad, not inference_mode: peft re-registers merged weights during the forward, and inference
    # tensors left in a model that goes on training would break its backward
    with torch.no_grad():
        z = encoder.embed([str(f) for f in files], crop=crop, batch_size=batch_size).float().cpu()
    if not torch.isfinite(z).all():
        raise NonFiniteEmbeddings(f"the encoder gives non-finite embeddings for {int((~torch.isfinite(z).all(1)).sum())} of {len(z)} images")
    embeddings = dict(zip(files, z))
    scores = pair_scores(pairs, embeddings)
    metrics = model_metrics(pairs, scores)
    report = dict(metrics["overall"])
    if "split" in metrics:
        report["split_auroc"] = {k: v["auroc"] for k, v in metrics["split"].items()}
    report["mean_cosine"] = float(mean_pairwise_cosine(z)) if len(z) > 1 else float("nan")
    return _clean(report)


@dataclass
class EvaluationResult:
    metrics: dict[str, Any]
    files: dict[str, Path]
    computed: dict[str, int] = field(default_factory=dict)  # embeddings computed (not cached) per model


def evaluate(
    model: str | os.PathLike | None,
    pairs: str | os.PathLike,
    out: str | os.PathLike,
    baselines: Sequence[str] = (),
    crop: str = "center",
    name: str = "styleid",
    device: str | torch.device | None = None,
    batch_size: int = 32,
    cache_dir: str | os.PathLike | None = "default",
    detector: str = "retinaface",
    model_rootpath: str | None = None,
    progress: bool = True,
) -> EvaluationResult:
    """Evaluate a StyleID encoder (Hub id or folder; None = baselines only) and baselines on `pairs`.

    cache_dir: "default" = OUT/embedding_cache, None = no cache."""
    if crop not in CROPS:
        raise StyleIDError(f"--crop must be one of {', '.join(CROPS)}, got {crop!r}")
    specs = [ModelSpec(name, "styleid", str(model))] if model is not None else []
    specs += [parse_baseline(b) for b in baselines]
    if not specs:
        raise StyleIDError("nothing to evaluate: give --model and/or --baseline")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise StyleIDError(f"model names must be unique, got {names}; use --name to rename the --model")
    pair_list = read_pairs(pairs)  # bad CSVs fail before any model loads
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache = out / CACHE_FOLDER if cache_dir == "default" else (Path(cache_dir) if cache_dir is not None else None)
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    files = list(dict.fromkeys([p.source for p in pair_list] + [p.stylized for p in pair_list]))
    labels = np.array([p.label for p in pair_list])

    scores: dict[str, np.ndarray] = {}
    computed: dict[str, int] = {}
    for spec in specs:
        embeddings, n_new = embed_with_cache(
            files, spec, crop, cache,
            lambda spec=spec: build_embedder(spec, crop, dev, batch_size, detector, model_rootpath),
            batch_size=batch_size, progress=progress,
        )
        scores[spec.name] = pair_scores(pair_list, embeddings)
        computed[spec.name] = n_new

    metrics = {n: _clean(model_metrics(pair_list, s)) for n, s in scores.items()}
    written = {"metrics": out / "metrics.json", "table": out / "table.md"}
    with atomic_write(written["metrics"]) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2))
    with atomic_write(written["table"]) as tmp:
        tmp.write_text(markdown_table(metrics))
    if labels.all() or not labels.any():
        raise StyleIDError(f"{pairs}: ROC curves need both label 0 and label 1 pairs (metrics.json and table.md were written)")
    for key, log_fpr in (("roc", False), ("roc_log", True)):
        written[key] = out / f"{key}.png"
        plot_roc(scores, labels, written[key], log_fpr)
    strength_plot = out / "similarity_vs_strength.png"
    if plot_similarity_vs_strength(pair_list, scores, strength_plot):
        written["similarity_vs_strength"] = strength_plot
    return EvaluationResult(metrics, written, computed)

