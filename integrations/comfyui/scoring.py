"""Scores behind StyleIDSimilarity and StyleIDLikenessGate, free of ComfyUI types ([B,3,H,W] tensors in 0..1).

A batch of N images against R reference photos of one person: the N×R cosine table, and per image the mean
over references (several photos of a person average out pose and lighting). An image without a face is
scored on its centre crop and flagged, never refused.
"""
from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import ImageDraw

from styleid_guidance.errors import StyleIDError
from styleid_guidance.files.images import to_pil, to_tensor

from .models import StyleIDModel

GATE_MODES = ("threshold", "top_k", "threshold_then_top_k")


@dataclass
class Scores:
    table: torch.Tensor  # [N, R] cosine similarities
    similarity: list[float]  # [N] mean over references
    same: list[bool]  # similarity >= threshold
    likeness: list[float | None]  # calibrated percent, None without a calibration
    face_found: list[bool]  # per image; False = scored on the centre crop
    reference_face_found: list[bool]
    threshold: float

    def csv(self) -> str:
        """The N×R table as CSV: one row per image, one column per reference, then the summary columns."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        refs = [f"ref_{j}" for j in range(self.table.shape[1])]
        writer.writerow(["image", *refs, "similarity", "verdict", "likeness_percent", "face_found"])
        for i, row in enumerate(self.table.tolist()):
            like = self.likeness[i]
            writer.writerow([i, *(f"{v:.6f}" for v in row), f"{self.similarity[i]:.6f}",
                             "same" if self.same[i] else "different", "" if like is None else f"{like:.1f}",
                             "yes" if self.face_found[i] else "no (centre crop)"])
        return buf.getvalue()


def score(model: StyleIDModel, references: torch.Tensor | Sequence[torch.Tensor], images: torch.Tensor,
          threshold: float) -> Scores:
    """Cosine similarity of every image to every reference photo (a batch, or a list of [1,3,H,W] photos of any
    sizes; embeddings as `styleid verify` computes them)."""
    if not math.isfinite(threshold):
        raise StyleIDError(f"threshold must be a finite number, got {threshold}")
    ref, ref_found = model.embed(references, "reference")
    emb, found = model.embed(images, "image")
    table = emb @ ref.T
    sims = table.mean(dim=1).tolist()
    return Scores(table, sims, [s >= threshold for s in sims], [model.likeness(s) for s in sims], found, ref_found, threshold)


def clip_summary(scores: Scores) -> dict[str, object]:
    """The batch read as the frames of one clip (LoadVideo → GetVideoComponents): frames, mean / min / std of the
    per-frame similarity, and the frames without a detectable face (scored on their centre crop, never dropped)."""
    sims = torch.tensor(scores.similarity, dtype=torch.float64)
    return {"frames": len(scores.similarity), "mean": float(sims.mean()), "min": float(sims.min()),
            "std": float(sims.std(unbiased=False)), "no_face_frames": [i for i, ok in enumerate(scores.face_found) if not ok]}


def curve_image(scores: Scores, fps: float | None = None) -> torch.Tensor:
    """The similarity over the clip as a [1,3,H,W] picture: one point per frame, no-face frames marked ✕, the
    threshold dashed; the x axis in seconds when the frame rate is known, else in frames."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    x = np.arange(len(scores.similarity), dtype=float)
    if fps:
        x = x / fps
    sim = np.asarray(scores.similarity, float)
    no_face = ~np.asarray(scores.face_found, bool)
    fig = Figure(figsize=(6.4, 3.0), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(x, sim, marker=".", label=f"StyleID (mean {sim.mean():.3f}, min {sim.min():.3f})")
    ax.plot(x[no_face], sim[no_face], "x", color="tab:red", markersize=8, label="no face found (centre crop)")
    ax.axhline(scores.threshold, color="grey", linestyle="--", linewidth=1, label=f"threshold {scores.threshold:g}")
    ax.set_xlabel("time (s)" if fps else "frame")
    ax.set_ylabel("similarity to the reference")
    ax.set_ylim(min(-0.05, float(sim.min()) - 0.05), 1.05)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    return torch.from_numpy(rgba[..., :3].copy()).permute(2, 0, 1)[None].float() / 255.0


def annotate(images: torch.Tensor, scores: Scores) -> torch.Tensor:
    """The images with their score written on them: a green frame for "same", red for "different", and
    "no face" where the centre crop was scored."""
    out = []
    for i, x in enumerate(images):
        pil = to_pil(x)
        draw = ImageDraw.Draw(pil)
        w, h = pil.size
        colour = (40, 200, 70) if scores.same[i] else (220, 50, 50)
        border = max(2, min(w, h) // 40)
        draw.rectangle([0, 0, w - 1, h - 1], outline=colour, width=border)
        like = scores.likeness[i]
        text = f"{scores.similarity[i]:.3f}" + (f" {like:.0f}%" if like is not None else "")
        if not scores.face_found[i]:
            text += " no face"
        draw.rectangle([border, border, border + 7 * len(text) + 6, border + 14], fill=(0, 0, 0))
        draw.text((border + 3, border + 2), text, fill=colour)
        out.append(to_tensor(pil)[0])
    return torch.stack(out)


@dataclass
class GateResult:
    accepted: list[int]  # indices into the batch, best first
    rejected: list[int]  # the others, best first
    scores: list[float]  # similarities of the accepted images, in order


def gate(similarity: list[float], mode: str, threshold: float, top_k: int) -> GateResult:
    """Sort by similarity (best first) and keep those above `threshold`, the best `top_k`, or both in turn.
    Nothing passing is a valid, empty result. Non-finite scores never pass."""
    if mode not in GATE_MODES:
        raise StyleIDError(f"mode must be one of {', '.join(GATE_MODES)}, got {mode!r}")
    if not math.isfinite(threshold):
        raise StyleIDError(f"threshold must be a finite number, got {threshold}")
    if top_k < 1:
        raise StyleIDError(f"top_k must be at least 1, got {top_k}")
    finite = [i for i, s in enumerate(similarity) if math.isfinite(s)]
    order = sorted(finite, key=lambda i: (-similarity[i], i))  # stable: ties keep batch order
    keep = order
    if mode in ("threshold", "threshold_then_top_k"):
        keep = [i for i in keep if similarity[i] >= threshold]
    if mode in ("top_k", "threshold_then_top_k"):
        keep = keep[:top_k]
    kept = set(keep)
    rejected = [i for i in order if i not in kept] + [i for i in range(len(similarity)) if i not in set(finite)]
    return GateResult(keep, rejected, [similarity[i] for i in keep])
