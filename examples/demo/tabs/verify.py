"""Verify tab: a photo and its stylisations → similarity under StyleID, ArcFace and CLIP, with verdicts.

Videos may be among the compared inputs (not the reference): each is scored frame by frame (clips.py), with one
row (the mean over its sampled frames) in the table and its per-frame curve under the chart.

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
from styleid_guidance.files.video import is_video
from styleid_guidance.options import CROPS, DEFAULT_CROP

from .clips import Clip, clip_curves, open_clip, stack
from .group import run_group
from ..limits import Limits, display_name, open_image, thumbnail
from ..profiles import Models
from ..render import similarity_chart
from ..scoring import THRESHOLDS, prepare, score, verdict
from ..weight_sources import IDENTITY_LABELS, IDENTITY_MODELS

HEADERS = ["image"] + [h for m in IDENTITY_MODELS for h in (IDENTITY_LABELS[m], f"{IDENTITY_LABELS[m]} verdict")]
FACE_CHOICES = [("largest face in each image, against the first (the reference)", "largest"),
                ("group photo: the last image; each other is one person's photo, named by its file", "group")]
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
        if i > 0 and is_video(path):  # read by read_clips
            continue
        try:
            good.append((i, name, open_image(path, _what(i), limits)))
        except StyleIDError as err:
            bad.append(str(err))
    return good, bad


def read_clips(paths: Sequence[str | os.PathLike], limits: Limits) -> tuple[list[Clip], list[str]]:
    """([the compared videos' sampled frames], [one sentence per unreadable one]); the reference is never a video."""
    clips, bad = [], []
    for i, path in enumerate(paths):
        if i == 0 and is_video(path):
            bad.append(f"reference ({display_name(path)}): the reference must be a photo, not a video; put the photo "
                       "first and the video after it")
        elif i > 0 and is_video(path):
            try:
                clips.append(open_clip(path, _what(i), limits))
            except StyleIDError as err:
                bad.append(str(err))
    return clips, bad


def previews(paths: Sequence[str | os.PathLike] | None, limits: Limits) -> tuple[list[tuple[Image.Image, str]], list[str]]:
    """Thumbnails of what the server read, captioned (the first as the reference), and the skipped files."""
    paths = [p for p in (paths or []) if p][: limits.max_verify_images + 1]
    good, bad = read_uploads(paths, limits)
    clips, clip_errors = read_clips(paths, limits)
    shown = [(thumbnail(im), f"reference: {name}" if i == 0 else name) for i, name, im in good]
    shown += [(thumbnail(c.frames[0].image), f"{c.name} (video, {len(c.frames)} frames)") for c in clips]
    return shown, bad + clip_errors


def run_group_verify(models: Models, paths: Sequence[str | os.PathLike], limits: Limits, progress=_no_progress) -> VerifyResult:
    """Group mode (group.py): every upload must be readable, since each one is a person or the group photo."""
    good, bad = read_uploads([p for p in paths if not is_video(p)], limits)
    if bad or len(good) != len(paths):
        raise StyleIDError((bad or ["videos cannot be people or the group photo in group mode"])[0])
    progress(0.02, desc="finding faces")
    res = run_group(models, [(name, im) for _, name, im in good[:-1]], (good[-1][1], good[-1][2]), progress)
    return VerifyResult(res.rows, res.picture, res.message)


def run_verify(models: Models, paths: Sequence[str | os.PathLike] | None, limits: Limits, progress=_no_progress,
               crop: str = DEFAULT_CROP, faces: str = "largest") -> VerifyResult:
    if crop not in CROPS:
        raise StyleIDError(f"crop must be one of {', '.join(CROPS)}, got {crop!r}")
    if faces not in [v for _, v in FACE_CHOICES]:
        raise StyleIDError(f"faces must be one of {', '.join(v for _, v in FACE_CHOICES)}, got {faces!r}")
    paths = [p for p in (paths or []) if p]
    _check_count(paths, limits)
    if faces == "group":
        return run_group_verify(models, paths, limits, progress)
    good, skipped = read_uploads(paths, limits)
    clips, clip_errors = read_clips(paths, limits)
    if not good or good[0][0] != 0:
        raise StyleIDError(f"{(clip_errors + skipped)[0]}; the first image is the reference, so nothing was compared")
    skipped += clip_errors
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
    if not compared and not clips:
        raise StyleIDError("nothing to compare with the reference: " + "; ".join(skipped))
    # a clip's frames without a face stay in, on the centre crop (marked on its curve): never dropped silently
    frames = [prepare(models, f.image, f"{c.name} @ {f.time:.2f} s", detect=crop == "face") for c in clips for f in c.frames]
    scores = score(models, reference, compared + frames, IDENTITY_MODELS, progress=progress, span=(0.1, 0.9),
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
    per_clip, no_face, start = {m: [] for m in scores.similarity}, [], len(compared)
    for c in clips:
        stop = start + len(c.frames)
        for m, sims in scores.similarity.items():
            per_clip[m].append(sims[start:stop])
        no_face.append([p.region is None and crop == "face" for p in frames[start - len(compared):stop - len(compared)]])
        start = stop
    for k, c in enumerate(clips):
        row = [f"{c.name} (mean of {len(c.frames)} frames)"]
        for m in IDENTITY_MODELS:
            mean = sum(per_clip[m][k]) / len(per_clip[m][k]) if m in per_clip else None
            row += [round(mean, 3) if mean is not None else "n/a", verdict(m, mean)]
        rows.append(row)
    progress(0.95, desc="drawing the chart")
    bars = {m: sims[: len(compared)] + [sum(v) / len(v) for v in per_clip[m]] for m, sims in scores.similarity.items()}
    chart = similarity_chart([p.name for p in compared] + [f"{c.name} (mean)" for c in clips], bars, THRESHOLDS)
    if clips:
        chart = stack(chart, clip_curves(clips, per_clip, no_face, THRESHOLDS))
    how = {"face": "on the detected faces", "center": "on centre crops", "none": "on the whole images"}[crop]
    lines = [
        f"Compared with the reference **{reference.name}**, {how}. Same/different thresholds: "
        + ", ".join(f"{IDENTITY_LABELS[m]} {THRESHOLDS[m]:.1f}" for m in IDENTITY_MODELS) + "."
    ]
    lines += [f"🎞️ {c.name}: {len(c.frames)} frames sampled, {sum(nf)} without a face (scored on the centre crop)"
              + (f", {c.unreadable} could not be decoded" if c.unreadable else "") for c, nf in zip(clips, no_face)]
    lines += [f"⚠️ Left out {s}" for s in skipped]
    lines += [f"⚠️ {msg}" for msg in scores.unavailable.values()]
    lines += [f"ℹ️ {n}" for n in models.notes]
    return VerifyResult(rows, chart, "\n\n".join(lines), skipped)
