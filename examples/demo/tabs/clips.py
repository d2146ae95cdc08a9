"""Verify tab: a video among the compared inputs, scored frame by frame.

A clip is sampled as `styleid score` samples it (`numpy.linspace` over the frames the stream holds, 16 by default,
presentation times kept), each frame scored on its largest face, or on its centre crop where no face is found
(marked on the curve, never dropped), against the same reference as the photos. The table gets one row per clip
(the mean over its frames, with the verdict at the mean), and the chart a per-frame curve per clip.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from styleid_guidance.errors import StyleIDError
from styleid_guidance.files.video import DEFAULT_FRAMES, Frame, VideoReader

from ..limits import Limits, without_paths, display_name
from ..render import MODEL_COLORS
from ..weight_sources import IDENTITY_LABELS


@dataclass
class Clip:
    name: str
    frames: list[Frame]
    unreadable: int  # sampled frames that could not be decoded


def open_clip(path: str | os.PathLike, what: str, limits: Limits, frames: int = DEFAULT_FRAMES) -> Clip:
    """The sampled frames of an uploaded video after the upload checks, or one sentence naming the file (never its
    server-side path)."""
    path = Path(path)
    name = display_name(path)
    if not path.is_file():
        raise StyleIDError(f"{what} ({name}): the upload is gone; upload the video again")
    size_mb = path.stat().st_size / 2**20
    if size_mb == 0:
        raise StyleIDError(f"{what} ({name}): the file is empty; upload an MP4, WebM, MOV, MKV, AVI or GIF video")
    if size_mb > limits.max_upload_mb:
        raise StyleIDError(f"{what} ({name}): {size_mb:.1f} MB is over the {limits.max_upload_mb:g} MB upload limit; "
                           "use a shorter or smaller clip")
    try:
        reader = VideoReader(path, frames)
        sampled = list(reader.frames())
    except StyleIDError as err:
        raise StyleIDError(f"{what} ({name}): {without_paths(str(err), path).removeprefix(name + ': ')}") from None
    except Exception as err:  # a decoder bug on a crafted file: still one sentence, no path
        raise StyleIDError(f"{what} ({name}): not a readable video ({type(err).__name__})") from None
    big = [f for f in sampled if max(f.image.size) > limits.max_side]
    if big:
        w, h = big[0].image.size
        raise StyleIDError(f"{what} ({name}): {w}x{h} px frames are larger than the limit of {limits.max_side} px per side")
    return Clip(name, sampled, len(reader.unreadable))


def clip_curves(clips: Sequence[Clip], similarity: dict[str, list[list[float]]], no_face: Sequence[list[bool]],
                thresholds: dict[str, float]) -> Image.Image:
    """Per-frame similarity over time, one panel per clip, one line per identity model; no-face frames marked ✕."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 2.6 * len(clips)), dpi=100)
    canvas = FigureCanvasAgg(fig)
    for k, clip in enumerate(clips):
        ax = fig.add_subplot(len(clips), 1, k + 1)
        t = [f.time for f in clip.frames]
        for model, per_clip in similarity.items():
            sims = per_clip[k]
            ax.plot(t, sims, marker=".", label=IDENTITY_LABELS[model], color=MODEL_COLORS[model])
            ax.axhline(thresholds[model], color=MODEL_COLORS[model], linestyle="--", linewidth=1, alpha=0.8)
            marked = [(ti, s) for ti, s, nf in zip(t, sims, no_face[k]) if nf]
            if marked:
                ax.plot(*zip(*marked), "x", color="tab:red", markersize=8)
        if any(no_face[k]):
            ax.plot([], [], "x", color="tab:red", label="no face (centre crop)")
        ax.set_title(f"{clip.name}: similarity per frame" + (f" ({clip.unreadable} frames unreadable)" if clip.unreadable else ""),
                     fontsize=9)
        ax.set_xlabel("time (s)")
        ax.set_ylabel("similarity")
        ax.set_ylim(-0.2, 1.05)
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    canvas.draw()
    return Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy())


def stack(top: Image.Image, bottom: Image.Image) -> Image.Image:
    """The bar chart above the clips' curves, as one picture (the tab's chart)."""
    width = max(top.width, bottom.width)
    out = Image.new("RGB", (width, top.height + bottom.height), "white")
    out.paste(top.convert("RGB"), (0, 0))
    out.paste(bottom.convert("RGB"), (0, top.height))
    return out
