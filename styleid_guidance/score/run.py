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

from ..errors import Arg, StyleIDError
from ..metrics.verification import mean_pairwise_cosine
from .cache import ContentCache, default_cache_dir
from ..options import DEFAULT_DETECTOR, DEFAULT_THRESHOLD, NO_FACE_POLICIES, RELEASED_MODEL
from ..files.video import DEFAULT_FRAMES
from .embedding import embed_side, process_state, world_size
from .models import ScoreModel, default_workers, parse_models
from .pairing import MEAN, Pairing, pair_sources
from .sources import Source, check_model_matches, read_source
from .videos import ClipEmbeddings, ClipScore, clip_score, frame_rows, summarize



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
    clips: dict[int, ClipScore] = field(default_factory=dict)  # pair → its clip's frames, where GEN is a video
    computed: int = 0  # items embedded now (the protocol's own model)

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
        if self.clips:
            out.update(summarize(list(self.clips.values())))
            out["no_face_frames"] = int(sum(c.no_face.sum() for c in self.clips.values()))
        return out

    def line(self) -> str:
        """`StyleID: 0.712 ± 0.081 (n=500, no_face=3, verified=0.94 @0.40)`: one parseable line."""
        s = self.summary()
        if not s["n"]:
            return f"{self.name}: undefined (n=0, no_face={s['no_face']}, skipped={s['skipped']})"
        extra = f", skipped={s['skipped']}" if s["skipped"] else ""
        if self.clips:  # videos: how many clips and frames the number rests on, and frames that could not be read
            extra += f", videos={len(self.clips)}, frames={s['frames']}"
            extra += f", unreadable_frames={s['unreadable_frames']}" if s["unreadable_frames"] else ""
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
    computed: dict[str, int] = field(default_factory=dict)  # images and frames embedded (not cached) per model

    is_main: bool = True  # False in the other processes of an `accelerate launch` (only the main one reports)

    def rows(self) -> list[dict[str, Any]]:
        """Per model and pair the CSV rows; a video gives one row per sampled frame, with `frame` and `time`."""
        out = []
        videos = any(m.clips for m in self.models)
        for m in self.models:
            for k, (i, j) in enumerate(self.pairing.pairs):
                reference = "mean" if i == MEAN else self.ref.names[i]
                if k in m.clips:
                    out.extend(frame_rows(m.name, self.gen.names[j], reference, m.clips[k], m.threshold))
                    continue
                sim = m.similarity[k]
                row = {"model": m.name, "reference": reference, "generated": self.gen.names[j]}
                if videos:
                    row.update(frame="", time="")
                out.append({**row, "similarity": f"{sim:.6f}" if math.isfinite(sim) else "",
                            "verified": "" if not math.isfinite(sim) else int(sim >= m.threshold),
                            "no_face": int(m.no_face[k]), "skipped": int(not math.isfinite(sim))})
        return out

    def summary(self) -> dict[str, Any]:
        models = {}
        for m in self.models:
            models[m.name] = m.summary()
            if m.clips:
                models[m.name]["videos"] = [m.clips[k].to_dict(self.gen.names[j])
                                            for k, (_, j) in enumerate(self.pairing.pairs) if k in m.clips]
        return {"pairing": self.pairing.mode, "reference": self.ref.where, "generated": self.gen.where,
                "pairs": len(self.pairing.pairs), "models": models}


def check_threshold(threshold: float) -> float:
    if not (isinstance(threshold, (int, float)) and math.isfinite(threshold) and -1.0 <= threshold <= 1.0):
        raise StyleIDError("{threshold}: a cosine similarity threshold must be a number in [-1, 1]", param="threshold",
                           threshold=Arg("threshold", threshold))
    return float(threshold)


def _cache_setting(model: ScoreModel, crop: str, no_face: str, detector: str) -> str:
    face = f"+no-face={no_face}+detector={detector}" if crop == "face" else ""
    return f"crop={crop}{face}+precision={model.precision.name}"


def score(ref: str | Path | Source, gen: str | Path | Source, models: Sequence[str] | None = None, *,
          pairs: str | Path | None = None, reference_set: bool = False, crop: str = "face", no_face: str = "center",
          threshold: float = DEFAULT_THRESHOLD, device: str | torch.device | None = None, precision: str = "fp32",
          batch_size: int = 32, num_workers: int | None = None, detector: str = DEFAULT_DETECTOR,
          model_rootpath: str | None = None, cache_dir: str | Path | None = "default", progress: bool = False,
          pairing: Pairing | None = None, frames: int | None = DEFAULT_FRAMES, protocol: str | None = None) -> ScoreResult:
    """Identity similarity of each generated image to its reference, for every model.

    ref / gen: an image, a folder (recursive, sorted) or an embeddings file from `styleid embed`. Pairing: see
    styleid_guidance.score.pairing. no_face: "center" (embed the centre crop, count it), "skip" (leave the pair
    out) or "error". models: --model values (None: the released model, or the model two embeddings files record).
    cache_dir: "default" = $STYLEID_CACHE/score (~/.cache/styleid/score), None = no cache. pairing: the result of
    `pair_sources(ref, gen, ...)` when the caller already paired the Sources (the CLI does, before any model loads).
    A video (in ref / gen, or in their folders) is one item scored on `frames` frames sampled uniformly over it
    (None = every frame): its similarity is the mean over its frames, and every item weighs the same.
    protocol: "consisid" (or "consisid=PACK") adds ConsisID's FaceSim-Arc, computed on the same frames
    (styleid_guidance.score.consisid)."""
    from ..devices import resolve_device, resolve_precision

    if no_face not in NO_FACE_POLICIES:
        raise StyleIDError(f"no_face must be one of {', '.join(NO_FACE_POLICIES)}, got {no_face!r}")
    threshold = check_threshold(threshold)
    ref_src = ref if isinstance(ref, Source) else read_source(ref, frames)
    gen_src = gen if isinstance(gen, Source) else read_source(gen, frames)
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
    if protocol is not None and embedded:
        raise StyleIDError(f"{embedded[0].where}: the {protocol} protocol embeds images with its own face model; give "
                           "images or videos, not an embeddings file")
    state = process_state() if world_size() > 1 else None
    dev = state.device if state is not None and state.num_processes > 1 else resolve_device(device)
    prec = resolve_precision(precision, dev)
    cache_root = default_cache_dir() if cache_dir == "default" else (Path(cache_dir) if cache_dir is not None else None)
    workers = default_workers() if num_workers is None else num_workers
    protocol_model = _protocol_model(protocol, dev) if protocol is not None else None
    results, computed = [], {}
    with ThreadPoolExecutor(max_workers=workers) if workers > 0 else contextlib.nullcontext() as pool:
        for spec in specs:
            if len(embedded) == 2:  # nothing to embed: the files already hold the model's embeddings
                z_ref, st_ref, z_gen, st_gen, n_new = ref_src.embeddings, ["ok"] * len(ref_src), gen_src.embeddings, ["ok"] * len(gen_src), 0
                clips = {}
            else:
                model = ScoreModel(spec, crop, no_face, dev, batch_size, detector, model_rootpath, prec, workers)
                cache = ContentCache(cache_root, spec.key, _cache_setting(model, crop, no_face, detector)) if cache_root else None
                r = embed_side(ref_src, model, cache, batch_size, pool, progress, "references")
                g = embed_side(gen_src, model, cache, batch_size, pool, progress, "generated")
                z_ref, st_ref, z_gen, st_gen, n_new, clips = r.z, r.status, g.z, g.status, r.computed + g.computed, g.clips
            for s, z in ((ref_src, z_ref), (gen_src, z_gen)):
                check_model_matches(s, spec.source, z_gen.shape[1] if s is ref_src else z_ref.shape[1])
            results.append(_model_score(spec.name, spec.source, threshold, pairing, z_ref, st_ref, z_gen, st_gen, clips))
            computed[spec.name] = n_new
        if protocol is not None:
            results.append(_protocol_score(protocol_model, protocol, ref_src, gen_src, pairing, threshold, cache_root,
                                           batch_size, progress))
            computed[results[-1].name] = results[-1].computed
    return ScoreResult(pairing, ref_src, gen_src, results, computed, is_main=state is None or state.is_main_process)


def _protocol_model(protocol: str, device: torch.device) -> Any:
    """The protocol's face model, loaded before any other work so a missing pack stops the run at once."""
    from . import consisid

    _, pack = consisid.parse_protocol(protocol)
    try:
        return consisid.ConsisIDModel(pack, device)
    except StyleIDError as err:  # the pack is the protocol's, not a --model's: say which argument to fix
        raise StyleIDError("{protocol}: {reason}", protocol=Arg("protocol", protocol), reason=err) from err


def _protocol_score(model: Any, protocol: str, ref: Source, gen: Source, pairing: Pairing, threshold: float,
                    cache_root: Path | None, batch_size: int, progress: bool) -> ModelScore:
    """ConsisID's FaceSim-Arc on the same items and frames: cosine clipped at 0, no-face frames left out, 0.0 for
    a clip (or image) without a face."""
    from . import consisid

    cache = ContentCache(cache_root, model.spec.key, consisid.cache_setting()) if cache_root else None
    r = embed_side(ref, model, cache, batch_size, None, progress, "references")
    g = embed_side(gen, model, cache, batch_size, None, progress, "generated")
    used = None if pairing.mode == "reference-set" else {i for i, _ in pairing.pairs}
    consisid.check_references(ref.names, r.status, used)
    out = _model_score(consisid.NAME, f"{protocol} ({model.spec.source})", threshold, pairing, r.z, r.status, g.z, g.status, g.clips,
                       clip_at_zero=True)
    out.computed = r.computed + g.computed
    return out


def _model_score(name: str, source: str, threshold: float, pairing: Pairing, z_ref: torch.Tensor, st_ref: list[str],
                 z_gen: torch.Tensor, st_gen: list[str], clips: dict[int, ClipEmbeddings] | None = None,
                 clip_at_zero: bool = False) -> ModelScore:
    baseline = None
    if pairing.mode == "reference-set":
        keep = [i for i, s in enumerate(st_ref) if s != "skipped"]
        if not keep:
            raise StyleIDError("no photo of the reference set has a face; use {fix} or other photos",
                               fix=Arg("no_face", "center"))
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
    n_no_face += sum(st_gen[j] == "no_face" for j in set(gen_idx) if j not in (clips or {}))
    if clip_at_zero:  # the ConsisID protocol: negative cosines count as 0, an image without a face as 0.0
        sim = np.where(np.isfinite(sim), np.maximum(sim, 0.0), 0.0)
    scored: dict[int, ClipScore] = {}
    for k, j in enumerate(gen_idx):
        if clips and j in clips:  # a video: its frames against the pair's reference; its value is their mean
            scored[k] = clip_score(clips[j], ref_rows[k], clip_at_zero)
            sim[k] = scored[k].mean
            flag[k] = flag[k] or bool(scored[k].no_face.any())
    n_no_face += sum(int(clips[j].status.count("no_face") + clips[j].status.count("skipped")) for j in set(gen_idx) if clips and j in clips)
    return ModelScore(name, source, threshold, sim, flag, int(n_no_face), baseline, scored)


def score_video(video: str | Path, reference: str | Path | Source, models: Sequence[str] | None = None, *,
                frames: int | None = DEFAULT_FRAMES, **kwargs: Any) -> dict[str, dict[str, Any]]:
    """One video file against its reference (an image, a video, or with reference_set=True a folder of photos):
    per model, the clip as `--json` reports it ({"frames": indices, "time", "similarity": per frame (None for a
    frame left out), "mean", "min", "std", "no_face", "unreadable"}). kwargs: as `score` (crop, no_face,
    protocol, device, cache_dir, ...)."""
    gen = read_source(video, frames)
    if gen.kind != "video":
        raise StyleIDError(f"{video}: not a video file; use score() for images and folders")
    result = score(reference, gen, models, frames=frames, **kwargs)
    return {m.name: m.clips[0].to_dict(gen.names[0]) for m in result.models}
