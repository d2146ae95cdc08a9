"""Verify tab: a photo and its stylisations → similarity under StyleID, ArcFace and CLIP, with verdicts."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

from PIL import Image

from styleid_guidance.errors import StyleIDError

from .limits import Limits, display_name, open_image
from .profiles import Models
from .weights import IDENTITY_LABELS, IDENTITY_MODELS
from .render import similarity_chart
from .scoring import THRESHOLDS, no_face_note, prepare, score, verdict

HEADERS = ["image"] + [h for m in IDENTITY_MODELS for h in (IDENTITY_LABELS[m], f"{IDENTITY_LABELS[m]} verdict")]


def _no_progress(*args, **kwargs) -> None:
    pass


@dataclass
class VerifyResult:
    rows: list[list]  # one per compared image, columns as HEADERS
    chart: Image.Image
    message: str


def unique_names(paths: Sequence[str | os.PathLike]) -> list[str]:
    names, seen = [], {}
    for p in paths:
        name = display_name(p)
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return names


def run_verify(models: Models, paths: Sequence[str | os.PathLike] | None, limits: Limits, progress=_no_progress) -> VerifyResult:
    paths = [p for p in (paths or []) if p]
    if len(paths) < 2:
        raise StyleIDError("upload at least two images: the first is the reference photo, the others are compared with it")
    if len(paths) > limits.max_verify_images:
        raise StyleIDError(f"{len(paths)} images uploaded; the demo compares at most {limits.max_verify_images} at a time")
    names = unique_names(paths)
    images = [open_image(p, f"image {i + 1}", limits) for i, p in enumerate(paths)]
    progress(0.02, desc="finding faces")
    prepared = [prepare(models, im, name) for im, name in zip(images, names)]
    scores = score(models, prepared[0], prepared[1:], IDENTITY_MODELS, progress=progress, span=(0.1, 0.9))
    if not scores.similarity:
        raise StyleIDError("no identity model could be loaded: " + "; ".join(scores.unavailable.values()))
    rows = []
    for i, name in enumerate(names[1:]):
        row: list = [name]
        for m in IDENTITY_MODELS:
            sim = scores.similarity[m][i] if m in scores.similarity else None
            row += [round(sim, 3) if sim is not None else "n/a", verdict(m, sim)]
        rows.append(row)
    progress(0.95, desc="drawing the chart")
    chart = similarity_chart(names[1:], scores.similarity, THRESHOLDS)
    lines = [
        f"Compared with the reference **{names[0]}**. Same/different thresholds: "
        + ", ".join(f"{IDENTITY_LABELS[m]} {THRESHOLDS[m]:.1f}" for m in IDENTITY_MODELS) + "."
    ]
    note = no_face_note(prepared)
    if note:
        lines.append(f"⚠️ {note}")
    lines += [f"⚠️ {msg}" for msg in scores.unavailable.values()]
    lines += [f"ℹ️ {n}" for n in models.notes]
    return VerifyResult(rows, chart, "\n\n".join(lines))
