"""`score(ref, gen, ...)`: the `styleid score` command as a function (no printing, no files)."""
from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import StyleIDError
from ..metrics.verification import mean_pairwise_cosine
from .cache import ContentCache, default_cache_dir
from ..options import DEFAULT_THRESHOLD, NO_FACE_POLICIES, RELEASED_MODEL
from .models import ScoreModel, default_workers, parse_models
from .pairing import MEAN, Pairing, pair_sources
from .sources import Source, check_model_matches, read_source



@dataclass
class ModelScore:
    """One model's result. `similarity[k]` is NaN for a pair left out (`no_face="skip"`)."""

    name: str
    model: str
    threshold: float
    similarity: np.ndarray
    no_face: np.ndarray  # per pair: the reference or the generated image was embedded without a face
    no_face_images: int
    baseline: dict[str, float] | None = None  # reference set: same-person spread among the references

    @property
    def kept(self) -> np.ndarray:
        return self.similarity[np.isfinite(self.similarity)]

    def summary(self) -> dict[str, Any]:
        kept = self.kept
        out: dict[str, Any] = {
            "model": self.model, "similarity": float(kept.mean()) if len(kept) else None,
            "std": float(kept.std(ddof=1)) if len(kept) > 1 else 0.0 if len(kept) else None,
            "n": len(kept), "no_face": self.no_face_images, "skipped": int(len(self.similarity) - len(kept)),
            "verified": float((kept >= self.threshold).mean()) if len(kept) else None, "threshold": self.threshold}
        if self.baseline is not None:
            out["baseline"] = self.baseline
        return out

    def line(self) -> str:
        """`StyleID: 0.712 ± 0.081 (n=500, no_face=3, verified=0.94 @0.40)`: one parseable line."""
        s = self.summary()
        if not s["n"]:
            return f"{self.name}: undefined (n=0, no_face={s['no_face']}, skipped={s['skipped']})"
        extra = f", skipped={s['skipped']}" if s["skipped"] else ""
        if self.baseline is not None:
            extra += f", baseline={self.baseline['similarity']:.3f} ± {self.baseline['std']:.3f} (k={self.baseline['k']})"
        return (f"{self.name}: {s['similarity']:.3f} ± {s['std']:.3f} (n={s['n']}, no_face={s['no_face']}, "
                f"verified={s['verified']:.2f} @{self.threshold:.2f}{extra})")


@dataclass
class ScoreResult:
    pairing: Pairing
    ref: Source
    gen: Source
    models: list[ModelScore]
    computed: dict[str, int] = field(default_factory=dict)  # images embedded (not cached) per model

    def rows(self) -> list[dict[str, Any]]:
        """Per model and pair: the CSV rows."""
        out = []
        for m in self.models:
            for k, (i, j) in enumerate(self.pairing.pairs):
                sim = m.similarity[k]
                out.append({"model": m.name, "reference": "mean" if i == MEAN else self.ref.names[i],
                            "generated": self.gen.names[j], "similarity": f"{sim:.6f}" if math.isfinite(sim) else "",
                            "verified": "" if not math.isfinite(sim) else int(sim >= m.threshold),
                            "no_face": int(m.no_face[k]), "skipped": int(not math.isfinite(sim))})
        return out

    def summary(self) -> dict[str, Any]:
        return {"pairing": self.pairing.mode, "reference": self.ref.where, "generated": self.gen.where,
                "pairs": len(self.pairing.pairs), "models": {m.name: m.summary() for m in self.models}}


def check_threshold(threshold: float) -> float:
    if not (isinstance(threshold, (int, float)) and math.isfinite(threshold) and -1.0 <= threshold <= 1.0):
        raise StyleIDError(f"threshold {threshold!r}: a cosine similarity threshold must be a number in [-1, 1]",
                           cli=f"--threshold {threshold!r}: a cosine similarity threshold must be a number in [-1, 1]")
    return float(threshold)


def _embed_side(source: Source, model: ScoreModel, cache: ContentCache | None, batch_size: int,
                pool: ThreadPoolExecutor | None, progress: bool, side: str) -> tuple[torch.Tensor, list[str], int]:
    """(embeddings [N, D] with NaN rows for skipped images, status per image, images computed)."""
    from tqdm.auto import tqdm

    if source.embeddings is not None:
        return source.embeddings, ["ok"] * len(source), 0
    rows: list[torch.Tensor | None] = [None] * len(source)
    status = ["ok"] * len(source)
    missing = []
    for i, f in enumerate(source.files):
        if cache is not None and cache.is_skipped(f):
            status[i] = "skipped"
        elif cache is not None and (hit := cache.get(f)) is not None:
            rows[i], status[i] = hit, "no_face" if cache.is_fallback(f) else "ok"
        else:
            missing.append(i)
    bar = tqdm(total=len(missing), desc=f"embedding {side} ({model.spec.name})", unit="img", disable=not progress or not missing)
    with torch.inference_mode(), bar:
        for start in range(0, len(missing), batch_size):
            idx = missing[start : start + batch_size]
            z, st = model.embed([source.files[i] for i in idx], pool)
            for i, e, s in zip(idx, z, st):
                status[i] = s
                rows[i] = None if s == "skipped" else e
                if cache is not None:
                    cache.put_skipped(source.files[i]) if s == "skipped" else cache.put(source.files[i], e, fallback=s == "no_face")
            bar.update(len(idx))
            if cache is not None and (start // batch_size) % 20 == 19:
                cache.save()  # an interrupted long run keeps what it computed
    if cache is not None:
        cache.save()
    dim = next((len(r) for r in rows if r is not None), model.embedding_dim or 1)
    return torch.stack([r if r is not None else torch.full((dim,), float("nan")) for r in rows]), status, len(missing)


def _cache_setting(model: ScoreModel, crop: str, no_face: str, detector: str) -> str:
    face = f"+no-face={no_face}+detector={detector}" if crop == "face" else ""
    return f"crop={crop}{face}+precision={model.precision.name}"


def score(ref: str | Path | Source, gen: str | Path | Source, models: Sequence[str] | None = None, *,
          pairs: str | Path | None = None, reference_set: bool = False, crop: str = "face", no_face: str = "center",
          threshold: float = DEFAULT_THRESHOLD, device: str | torch.device | None = None, precision: str = "fp32",
          batch_size: int = 32, num_workers: int | None = None, detector: str = "retinaface",
          model_rootpath: str | None = None, cache_dir: str | Path | None = "default", progress: bool = False,
          pairing: Pairing | None = None) -> ScoreResult:
    """Identity similarity of each generated image to its reference, for every model.

    ref / gen: an image, a folder (recursive, sorted) or an embeddings file from `styleid embed`. Pairing: see
    styleid_guidance.score.pairing. no_face: "center" (embed the centre crop, count it), "skip" (leave the pair
    out) or "error". models: --model values (None: the released model, or the model two embeddings files record).
    cache_dir: "default" = $STYLEID_CACHE/score (~/.cache/styleid/score), None = no cache. pairing: the result of
    `pair_sources(ref, gen, ...)` when the caller already paired the Sources (the CLI does, before any model loads)."""
    from ..devices import resolve_device, resolve_precision

    if no_face not in NO_FACE_POLICIES:
        raise StyleIDError(f"no_face must be one of {', '.join(NO_FACE_POLICIES)}, got {no_face!r}")
    threshold = check_threshold(threshold)
    ref_src = ref if isinstance(ref, Source) else read_source(ref)
    gen_src = gen if isinstance(gen, Source) else read_source(gen)
    pairing = pairing or pair_sources(ref_src, gen_src, pairs, reference_set)
    embedded = [s for s in (ref_src, gen_src) if s.kind == "embeddings"]
    if not models:
        recorded = {s.model for s in embedded}
        models = [recorded.pop()] if len(embedded) == 2 and len(recorded) == 1 and "" not in recorded else [RELEASED_MODEL]
    specs = parse_models(list(models))
    for s in embedded:
        if len(specs) > 1:
            raise StyleIDError(f"{s.where}: an embeddings file holds one model's embeddings; score images to compare "
                               f"{len(specs)} models")
        check_model_matches(s, specs[0].source)
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    cache_root = default_cache_dir() if cache_dir == "default" else (Path(cache_dir) if cache_dir is not None else None)
    workers = default_workers() if num_workers is None else num_workers
    results, computed = [], {}
    with ThreadPoolExecutor(max_workers=workers) if workers > 0 else contextlib.nullcontext() as pool:
        for spec in specs:
            if len(embedded) == 2:  # nothing to embed: the files already hold the model's embeddings
                z_ref, st_ref, z_gen, st_gen, n_new = ref_src.embeddings, ["ok"] * len(ref_src), gen_src.embeddings, ["ok"] * len(gen_src), 0
            else:
                model = ScoreModel(spec, crop, no_face, dev, batch_size, detector, model_rootpath, prec, workers)
                cache = ContentCache(cache_root, spec.key, _cache_setting(model, crop, no_face, detector)) if cache_root else None
                z_ref, st_ref, a = _embed_side(ref_src, model, cache, batch_size, pool, progress, "references")
                z_gen, st_gen, b = _embed_side(gen_src, model, cache, batch_size, pool, progress, "generated")
                n_new = a + b
            for s, z in ((ref_src, z_ref), (gen_src, z_gen)):
                check_model_matches(s, spec.source, z_gen.shape[1] if s is ref_src else z_ref.shape[1])
            results.append(_model_score(spec.name, spec.source, threshold, pairing, z_ref, st_ref, z_gen, st_gen))
            computed[spec.name] = n_new
    return ScoreResult(pairing, ref_src, gen_src, results, computed)


def _model_score(name: str, source: str, threshold: float, pairing: Pairing, z_ref: torch.Tensor, st_ref: list[str],
                 z_gen: torch.Tensor, st_gen: list[str]) -> ModelScore:
    baseline = None
    if pairing.mode == "reference-set":
        keep = [i for i, s in enumerate(st_ref) if s != "skipped"]
        if not keep:
            raise StyleIDError("no photo of the reference set has a face; use crop='center' or other photos",
                               cli="no photo of --reference-set has a face; use --no-face center or other photos")
        refs = z_ref[keep]
        mean = torch.nn.functional.normalize(refs.mean(0), dim=-1)
        sims = refs @ refs.T
        off = sims[~torch.eye(len(refs), dtype=torch.bool)].double().numpy()
        if len(refs) > 1:  # the same-person spread: how alike the person's own photos are, to read the score against
            baseline = {"similarity": float(mean_pairwise_cosine(refs)), "std": float(off.std(ddof=1)) if len(off) > 1 else 0.0,
                        "k": len(refs), "to_mean": float((refs @ mean).mean())}
        ref_rows = mean[None].expand(len(pairing.pairs), -1)
        ref_flag = np.full(len(pairing.pairs), any(st_ref[i] == "no_face" for i in keep))
    else:
        ref_idx = [i for i, _ in pairing.pairs]
        ref_rows = z_ref[ref_idx]
        ref_flag = np.array([st_ref[i] == "no_face" for i in ref_idx], bool)
    gen_idx = [j for _, j in pairing.pairs]
    sim = (ref_rows * z_gen[gen_idx]).sum(-1).double().numpy()  # NaN rows (skipped images) stay NaN
    flag = ref_flag | np.array([st_gen[j] == "no_face" for j in gen_idx], bool)
    used_ref = set() if pairing.mode == "reference-set" else {i for i, _ in pairing.pairs}
    n_no_face = sum(st_ref[i] == "no_face" for i in (range(len(st_ref)) if pairing.mode == "reference-set" else used_ref))
    n_no_face += sum(st_gen[j] == "no_face" for j in set(gen_idx))
    return ModelScore(name, source, threshold, sim, flag, int(n_no_face), baseline)
