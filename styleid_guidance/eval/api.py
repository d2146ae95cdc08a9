"""`evaluate` (the `styleid eval` command as a function) and `evaluate_encoder` (the trainer's check)."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..devices import check_precision, resolve_device
from ..errors import Arg, StyleIDError
from ..metrics.verification import mean_pairwise_cosine
from ..options import CROPS, DEFAULT_DETECTOR
from .cache import CACHE_FOLDER, embed_with_cache
from .models import ModelSpec, ModelUnavailable, build_embedder, parse_baseline
from .outputs import check_output_folder, new_report_dir, publish
from .pairs import Pair, read_pairs
from .plots import plot_human_scatter, plot_human_vs_strength, plot_roc, plot_similarity_vs_strength
from .report import _clean, human_table, markdown_table, model_metrics, pair_scores
from .outputs import SCORES_FILE, check_model_names, write_scores
from .table1 import render_table1, table1_specs


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
    skipped: dict[str, str] = field(default_factory=dict)  # --table1: model → why it could not be evaluated
    no_face: dict[str, int] = field(default_factory=dict)  # face models: images embedded without a face


def _specs(model: str | os.PathLike | None, name: str, baselines: Sequence[str], table1: bool) -> list[ModelSpec]:
    if table1:
        return table1_specs(None if model is None else str(model), name, baselines)
    specs = [ModelSpec(name, "styleid", str(model))] if model is not None else []
    return specs + [parse_baseline(b) for b in baselines]


def _write_report(tmp: Path, pair_list: Sequence[Pair], scores: dict[str, np.ndarray], metrics: dict[str, Any],
                  table: str) -> dict[str, str]:
    """Every file of the set, into the temp folder; returns key → file name."""
    names = {"metrics": "metrics.json", "table": "table.md", "scores": SCORES_FILE}
    (tmp / names["metrics"]).write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    (tmp / names["table"]).write_text(table, encoding="utf-8")
    write_scores(tmp / names["scores"], pair_list, scores)
    if not scores:
        return names
    labels = np.array([p.label for p in pair_list])
    if labels.any() and not labels.all():
        for key, log_fpr in (("roc", False), ("roc_log", True)):
            names[key] = f"{key}.png"
            plot_roc(scores, labels, tmp / names[key], log_fpr)
    for key, plot in (("similarity_vs_strength", lambda p: plot_similarity_vs_strength(pair_list, scores, p)),
                      ("human_scatter", lambda p: plot_human_scatter(pair_list, scores, metrics, p)),
                      ("human_vs_strength", lambda p: plot_human_vs_strength(pair_list, scores, p))):
        if plot(tmp / f"{key}.png"):
            names[key] = f"{key}.png"
    return names


def check_output(out: str | os.PathLike, cache_dir: str | os.PathLike | None = "default") -> tuple[Path | None, set[str]]:
    """(the cache folder, the entries of OUT a new set keeps); errors if OUT cannot be eval's folder."""
    out = Path(out)
    cache = out / CACHE_FOLDER if cache_dir == "default" else (Path(cache_dir) if cache_dir is not None else None)
    keep = {CACHE_FOLDER}
    if cache is not None and cache.resolve().is_relative_to(out.resolve()):
        if cache.resolve() == out.resolve():
            raise StyleIDError(f"{cache}: the embedding cache cannot be the output folder itself; choose a subfolder or another folder")
        keep.add(cache.resolve().relative_to(out.resolve()).parts[0])
    check_output_folder(out, keep)
    return cache, keep


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
    detector: str = DEFAULT_DETECTOR,
    model_rootpath: str | None = None,
    progress: bool = True,
    table1: bool = False,
    precision: str = "fp32",
) -> EvaluationResult:
    """Evaluate a StyleID encoder (Hub id or folder; None = baselines only) and baselines on `pairs`.

    table1: the paper's preset (every baseline with its own crop, `baselines` only override weights,
    `crop` is not used; see table1.py). cache_dir: "default" = OUT/embedding_cache, None = no cache.
    precision: of the torch models' embedding ("auto" | "fp32" | "bf16" | "fp16"); fp32 by default, so metrics
    are reproducible across machines (bf16 moves smoke-pair AUROC by about 1e-3, see docs/EVAL.md).
    OUT is replaced as a set (see outputs.py), the embedding cache inside it kept."""
    if crop not in CROPS:
        raise StyleIDError(f"crop must be one of {', '.join(CROPS)}, got {crop!r}")
    precision = check_precision(precision)
    specs = [dataclasses.replace(s, precision=precision) for s in _specs(model, name, baselines, table1)]
    if not specs:
        raise StyleIDError("nothing to evaluate: give {model} and/or {baselines}", model=Arg("model"),
                           baselines=Arg("baselines", flag="--baseline"))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise StyleIDError("model names must be unique, got {names}; use {name} to rename the StyleID model", names=names,
                           name=Arg("name"))
    pair_list = read_pairs(pairs)  # bad CSVs fail before any model loads
    check_model_names(pair_list, names)
    out = Path(out)
    cache, keep = check_output(out, cache_dir)
    tmp = new_report_dir(out)  # before the long work: proves OUT's folder is writable
    try:
        return _run(specs, pair_list, out, tmp, keep, cache, crop, device, batch_size, detector, model_rootpath,
                    progress, table1, str(pairs))
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _run(specs: list[ModelSpec], pair_list: list[Pair], out: Path, tmp: Path, keep: set[str], cache: Path | None,
         crop: str, device: str | torch.device | None, batch_size: int, detector: str, model_rootpath: str | None,
         progress: bool, table1: bool, where: str) -> EvaluationResult:
    dev = resolve_device(device)
    files = list(dict.fromkeys([p.source for p in pair_list] + [p.stylized for p in pair_list]))
    scores: dict[str, np.ndarray] = {}
    computed: dict[str, int] = {}
    skipped: dict[str, str] = {}
    no_face: dict[str, int] = {}
    for spec in specs:
        spec_crop = spec.crop or crop
        try:
            embeddings, n_new, fallbacks = embed_with_cache(
                files, spec, spec_crop, cache,
                lambda spec=spec, spec_crop=spec_crop: build_embedder(spec, spec_crop, dev, batch_size, detector, model_rootpath),
                batch_size=batch_size, progress=progress,
            )
        except ModelUnavailable as err:
            if not table1 or spec.kind == "styleid":
                raise
            skipped[spec.name] = err.for_cli().removeprefix(f"{spec.name}: ")
            continue
        scores[spec.name] = pair_scores(pair_list, embeddings)
        if not np.isfinite(scores[spec.name]).all():
            raise NonFiniteEmbeddings(f"{spec.name}: non-finite similarities (a diverged or damaged checkpoint?)")
        computed[spec.name] = n_new
        if spec.no_face != "error" and spec_crop == "face":
            no_face[spec.name] = len(fallbacks)
    if not scores:
        raise StyleIDError("no model could be evaluated: " + "; ".join(skipped.values()))

    metrics = {n: _clean(model_metrics(pair_list, s)) for n, s in scores.items()}
    for n, k in no_face.items():
        metrics[n]["no_face_images"] = k
    if table1:
        table = render_table1(metrics, specs, skipped, no_face, len(files))
    else:
        table = markdown_table(metrics)
        human = human_table(metrics)
        table += f"\n{human}" if human else ""
    names = _write_report(tmp, pair_list, scores, metrics, table)
    publish(tmp, out, keep)
    result = EvaluationResult(metrics, {k: out / v for k, v in names.items()}, computed, skipped, no_face)
    labels = np.array([p.label for p in pair_list])
    if labels.all() or not labels.any():
        raise StyleIDError(f"{where}: ROC curves need both label 0 and label 1 pairs (metrics.json, table.md and "
                           f"{SCORES_FILE} were written)")
    return result
