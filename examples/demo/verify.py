"""Verify tab: a photo and its stylisations → similarity under StyleID, ArcFace and CLIP, with verdicts.

Crops as `styleid verify --crop`: with "face" (the default) a reference without a face is an error and
an image without a face gets no verdict (it is left out and the message says so), as the CLI refuses
it too; "center" and "none" score whole images without looking for faces. A file that cannot be read
is left out on its own (named, with the reason) instead of costing the whole batch.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

from PIL import Image

from styleid_guidance.errors import StyleIDError
from styleid_guidance.options import CROPS, DEFAULT_CROP

from .limits import Limits, display_name, open_image, thumbnail
from .profiles import Models
from .render import similarity_chart
from .scoring import THRESHOLDS, prepare, score, verdict
from .weight_sources import IDENTITY_LABELS, IDENTITY_MODELS

HEADERS = ["image"] + [h for m in IDENTITY_MODELS for h in (IDENTITY_LABELS[m], f"{IDENTITY_LABELS[m]} verdict")]
CROP_CHOICES = [("face: detect and align the largest face (as styleid verify)", "face"),
                ("center: the centre crop, no face needed", "center"), ("none: the whole image", "none")]


def _no_progress(*args, **kwargs) -> None:
    pass


@dataclass
class VerifyResult:
    rows: list[list]  # one per compared image, columns as HEADERS
    chart: Image.Image
    message: str
    skipped: list[str] = field(default_factory=list)  # one sentence per image left out


def unique_names(paths: Sequence[str | os.PathLike]) -> list[str]:
    names, seen = [], {}
    for p in paths:
        name = display_name(p)
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return names


def _what(i: int) -> str:
    return "reference (image 1)" if i == 0 else f"image {i + 1}"


def _check_count(paths: Sequence, limits: Limits) -> None:
    if len(paths) < 2:
        raise StyleIDError("upload at least two images: the first is the reference photo, the others are compared with it")
    if len(paths) > limits.max_verify_images:
        raise StyleIDError(f"{len(paths)} images uploaded; the demo compares at most {limits.max_verify_images} at a time")


def read_uploads(paths: Sequence[str | os.PathLike], limits: Limits) -> tuple[list[tuple[int, str, Image.Image]], list[str]]:
    """([(index, name, image)] of the readable uploads, [one sentence per unreadable one])."""
    names = unique_names(paths)
    good, bad = [], []
    for i, (path, name) in enumerate(zip(paths, names)):
        try:
            good.append((i, name, open_image(path, _what(i), limits)))
        except StyleIDError as err:
            bad.append(str(err))
    return good, bad


def previews(paths: Sequence[str | os.PathLike] | None, limits: Limits) -> tuple[list[tuple[Image.Image, str]], list[str]]:
    """Thumbnails of what the server read, captioned (the first as the reference), and the skipped files."""
    paths = [p for p in (paths or []) if p][: limits.max_verify_images + 1]
    good, bad = read_uploads(paths, limits)
    return [(thumbnail(im), f"reference: {name}" if i == 0 else name) for i, name, im in good], bad


def run_verify(models: Models, paths: Sequence[str | os.PathLike] | None, limits: Limits, progress=_no_progress,
               crop: str = DEFAULT_CROP) -> VerifyResult:
    if crop not in CROPS:
        raise StyleIDError(f"crop must be one of {', '.join(CROPS)}, got {crop!r}")
    paths = [p for p in (paths or []) if p]
    _check_count(paths, limits)
    good, skipped = read_uploads(paths, limits)
    if not good or good[0][0] != 0:
        raise StyleIDError(f"{skipped[0]}; the first image is the reference, so nothing was compared")
    progress(0.02, desc="finding faces" if crop == "face" else "reading the images")
    prepared = [prepare(models, im, name, detect=crop == "face") for _, name, im in good]
    reference = prepared[0]
    if crop == "face":
        if reference.region is None:
            raise StyleIDError(f"reference ({reference.name}): no face found, so no verdicts; upload a photo with one clear "
                               "face, or choose the 'center' crop to compare whole images")
        for p in prepared[1:]:
            if p.region is None:
                skipped.append(f"{p.name}: no face found, so no verdict (choose the 'center' crop to score the whole image)")
        compared = [p for p in prepared[1:] if p.region is not None]
    else:
        compared = prepared[1:]
    if not compared:
        raise StyleIDError("nothing to compare with the reference: " + "; ".join(skipped))
    scores = score(models, reference, compared, IDENTITY_MODELS, progress=progress, span=(0.1, 0.9),
                   fallback="center" if crop == "face" else crop)
    if not scores.similarity:
        raise StyleIDError("no identity model could be loaded: " + "; ".join(scores.unavailable.values()))
    rows = []
    for i, p in enumerate(compared):
        row: list = [p.name]
        for m in IDENTITY_MODELS:
            sim = scores.similarity[m][i] if m in scores.similarity else None
            row += [round(sim, 3) if sim is not None else "n/a", verdict(m, sim)]
        rows.append(row)
    progress(0.95, desc="drawing the chart")
    chart = similarity_chart([p.name for p in compared], scores.similarity, THRESHOLDS)
    how = {"face": "on the detected faces", "center": "on centre crops", "none": "on the whole images"}[crop]
    lines = [
        f"Compared with the reference **{reference.name}**, {how}. Same/different thresholds: "
        + ", ".join(f"{IDENTITY_LABELS[m]} {THRESHOLDS[m]:.1f}" for m in IDENTITY_MODELS) + "."
    ]
    lines += [f"⚠️ Left out {s}" for s in skipped]
    lines += [f"⚠️ {msg}" for msg in scores.unavailable.values()]
    lines += [f"ℹ️ {n}" for n in models.notes]
    return VerifyResult(rows, chart, "\n\n".join(lines), skipped)
