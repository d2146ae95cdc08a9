"""Videos in `styleid score`: each clip is one generated item, embedded on its sampled frames.

`embed_clips` streams the sampled frames of every clip of a Source through a model in batches (only one batch
of decoded frames is held), reading and writing the content cache per (clip hash, frame index); a clip whose
sampled frames are all cached is not decoded at all. `ClipScore` is one clip's per-frame similarities and
its summary: every clip weighs the same in a model's score (the mean of each clip's mean, as ConsisID,
OpenS2V-Eval and the IPVG challenge report).
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..files.video import Frame, VideoReader
from .cache import ContentCache


@dataclass
class ClipEmbeddings:
    """The sampled frames of one clip: indices, presentation times (s), embeddings [F, D] (NaN rows for frames
    left out) and each frame's status ("ok" | "no_face" | "skipped"); `unreadable`: sampled frames that did not
    decode (not in `indices`)."""

    indices: list[int]
    times: list[float]
    z: torch.Tensor
    status: list[str]
    unreadable: list[int] = field(default_factory=list)
    count: int = 0  # frames in the clip
    lost: int = 0  # frames the header lists but the file does not hold

    def mean_embedding(self) -> torch.Tensor:
        """The normalised mean of the kept frames (a clip used as a reference), NaN when none was kept."""
        kept = self.z[[i for i, s in enumerate(self.status) if s != "skipped"]]
        if not len(kept):
            return torch.full((self.z.shape[1],), float("nan"))
        return torch.nn.functional.normalize(kept.mean(0), dim=-1)


@dataclass
class ClipScore:
    """One clip against its reference. `similarity[k]` is NaN for a frame left out (no face under `skip`)."""

    indices: list[int]
    times: list[float]
    similarity: np.ndarray
    no_face: np.ndarray  # per frame
    unreadable: int = 0  # sampled frames that did not decode + frames the header lists but the file lacks
    empty_value: float = math.nan  # the clip's value when no frame is kept (the ConsisID protocol reports 0.0)

    @property
    def kept(self) -> np.ndarray:
        return self.similarity[np.isfinite(self.similarity)]

    @property
    def mean(self) -> float:
        return float(self.kept.mean()) if len(self.kept) else self.empty_value

    def to_dict(self, generated: str) -> dict[str, Any]:
        kept = self.kept
        finite = lambda v: float(v) if math.isfinite(v) else None  # JSON has no NaN
        return {"generated": generated, "frames": list(self.indices), "time": [round(t, 6) for t in self.times],
                "similarity": [finite(v) for v in self.similarity], "mean": finite(self.mean),
                "min": float(kept.min()) if len(kept) else None,
                "std": float(kept.std(ddof=1)) if len(kept) > 1 else 0.0 if len(kept) else None,
                "no_face": int(self.no_face.sum()), "unreadable": self.unreadable}


def _cached(reader: VideoReader, cache: ContentCache | None) -> ClipEmbeddings | None:
    """The clip from the cache when every sampled frame (and its time) is there: no decoding."""
    if cache is None:
        return None
    rows, status, times = [], [], []
    for i in reader.indices:
        frame = Frame(reader.path, i, 0.0, None)  # type: ignore[arg-type]  # only the key is read
        t = cache.frame_time(reader.path, i)
        if t is None:
            return None
        hit = _frame_hit(frame, cache)
        if hit is None:
            return None
        rows.append(hit[0])
        status.append(hit[1])
        times.append(t)
    return _assemble(reader, list(reader.indices), times, rows, status)


def _assemble(reader: VideoReader, indices: list[int], times: list[float], rows: list[torch.Tensor | None],
              status: list[str], dim: int | None = None) -> ClipEmbeddings:
    d = next((len(r) for r in rows if r is not None), dim or 1)
    z = torch.stack([r if r is not None else torch.full((d,), float("nan")) for r in rows]) if rows else torch.zeros(0, d)
    return ClipEmbeddings(indices, times, z, status, list(reader.unreadable), reader.count, reader.lost)


def embed_clips(readers: dict[int, VideoReader], model: Any, cache: ContentCache | None, batch_size: int,
                pool: ThreadPoolExecutor | None, progress: bool = False, side: str = "generated") -> tuple[dict[int, ClipEmbeddings], int]:
    """Every clip's sampled frames through `model` (ScoreModel-like: `.embed(items, pool)`); returns
    (row → ClipEmbeddings, frames embedded now). New entries go into `cache`; the caller saves it."""
    from tqdm.auto import tqdm

    out: dict[int, ClipEmbeddings] = {}
    todo = []
    for row, reader in readers.items():
        hit = _cached(reader, cache)
        if hit is not None:
            out[row] = hit
        else:
            todo.append(row)
    per_clip: dict[int, dict[int, tuple[float, torch.Tensor | None, str]]] = {row: {} for row in todo}
    computed = 0
    total = sum(len(readers[r].indices) for r in todo)
    bar = tqdm(total=total, desc=f"embedding {side} frames ({model.spec.name})", unit="frame", disable=not progress or not total)
    def misses() -> Iterator[tuple[int, Frame]]:  # decoded frames the cache does not hold; hits are filled in here
        for row in todo:
            for frame in readers[row].frames():
                hit = _frame_hit(frame, cache)
                if hit is None:
                    yield row, frame
                else:
                    per_clip[row][frame.index] = (frame.time, *hit)
                    bar.update(1)

    with torch.inference_mode(), bar:
        for batch in _batches(misses(), batch_size):
            frames = [f for _, f in batch]
            z, st = model.embed(frames, pool)
            for (row, frame), e, s in zip(batch, z, st):
                per_clip[row][frame.index] = (frame.time, None if s == "skipped" else e, s)
                if cache is not None:
                    cache.put_skipped(frame) if s == "skipped" else cache.put(frame, e, fallback=s == "no_face")
                    cache.put_frame_time(frame)
            computed += len(batch)
            bar.update(len(batch))
    for row in todo:
        got = per_clip[row]
        indices = sorted(got)
        out[row] = _assemble(readers[row], indices, [got[i][0] for i in indices], [got[i][1] for i in indices],
                             [got[i][2] for i in indices], getattr(model, "embedding_dim", None))
    return out, computed


def _frame_hit(frame: Frame, cache: ContentCache | None) -> tuple[torch.Tensor | None, str] | None:
    if cache is None:
        return None
    if cache.is_skipped(frame):
        return None, "skipped"
    hit = cache.get(frame)
    if hit is None:
        return None
    return hit, "no_face" if cache.is_fallback(frame) else "ok"


def _batches(items: Iterator[tuple[int, Frame]], size: int) -> Iterator[list[tuple[int, Frame]]]:
    batch: list[tuple[int, Frame]] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def clip_score(clip: ClipEmbeddings, reference: torch.Tensor, clip_at_zero: bool = False) -> ClipScore:
    """Per-frame cosine of a clip's frames to one reference embedding (ConsisID protocol: clipped at 0 and
    0.0 for a clip with no face)."""
    sim = (clip.z.double() @ reference.double()).numpy() if len(clip.z) else np.zeros(0)
    if clip_at_zero:
        sim = np.where(np.isfinite(sim), np.maximum(sim, 0.0), sim)
    return ClipScore(list(clip.indices), list(clip.times), sim, np.array([s != "ok" for s in clip.status], bool),
                     len(clip.unreadable) + clip.lost, 0.0 if clip_at_zero else math.nan)


def frame_rows(name: str, generated: str, reference: str, clip: ClipScore, threshold: float) -> list[dict[str, Any]]:
    """The CSV rows of one clip: one per sampled frame, with its index and presentation time."""
    rows = []
    for i, t, sim, nf in zip(clip.indices, clip.times, clip.similarity, clip.no_face):
        ok = math.isfinite(sim)
        rows.append({"model": name, "reference": reference, "generated": generated, "frame": i, "time": f"{t:.6f}",
                     "similarity": f"{sim:.6f}" if ok else "", "verified": int(sim >= threshold) if ok else "",
                     "no_face": int(nf), "skipped": int(not ok)})
    return rows


def summarize(clips: Sequence[ClipScore]) -> dict[str, int]:
    """Counts for a model's summary: frames scored, frames that could not be read (the clips are listed apart)."""
    return {"frames": int(sum(len(c.kept) for c in clips)),
            "unreadable_frames": int(sum(c.unreadable for c in clips))}
