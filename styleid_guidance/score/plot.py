"""`styleid score --plot DIR`: each video's similarity over time, one PNG per clip, one curve per model, with
the frames that had no detectable face marked (an ✕ on the curve where their centre crop was scored, a tick on
the bottom axis where they were left out). Drawn on `matplotlib.figure.Figure`, never pyplot: no global
backend or figure state."""
from __future__ import annotations

import math
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np

from ..files.atomic import atomic_write

if TYPE_CHECKING:
    from .run import ScoreResult


def plot_name(generated: str) -> str:
    """`sub/clip.mp4` → `sub__clip.png`: one flat folder of plots, named after the clips."""
    return str(PurePosixPath(generated).with_suffix("")).replace("/", "__") + ".png"


def save_plots(result: ScoreResult, folder: str | Path) -> list[Path]:
    """One PNG per generated clip in `folder` (written atomically); returns the paths."""
    from matplotlib.figure import Figure

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    used: set[str] = set()
    for k, (_, j) in enumerate(result.pairing.pairs):
        curves = [(m.name, m.clips[k]) for m in result.models if k in m.clips]
        if not curves:
            continue
        name = plot_name(result.gen.names[j])
        if name in used:  # the same clip against another reference (pairs CSV)
            name = name[:-4] + f"-{k}.png"
        used.add(name)
        fig = Figure(figsize=(6.4, 3.0), dpi=110)
        ax = fig.add_subplot()
        bottom = -1.0
        for label, clip in curves:
            t = np.asarray(clip.times, float)
            sim = np.asarray(clip.similarity, float)
            line, = ax.plot(t, sim, marker=".", label=f"{label} (mean {clip.mean:.3f})" if math.isfinite(clip.mean) else label)
            shown = clip.no_face & np.isfinite(sim)
            ax.plot(t[shown], sim[shown], "x", color="tab:red", markersize=8, label=None)
            left_out = clip.no_face & ~np.isfinite(sim)
            ax.plot(t[left_out], np.full(left_out.sum(), bottom), "|", color="tab:red", markersize=14, label=None)
        ax.plot([], [], "x", color="tab:red", label="no face found")
        ax.set_xlabel("time (s)")
        ax.set_ylabel("cosine similarity to the reference")
        ax.set_ylim(bottom - 0.05, 1.05)
        ax.set_title(result.gen.names[j], fontsize=9)
        ax.legend(fontsize=7, loc="lower left")
        fig.tight_layout()
        with atomic_write(folder / name) as tmp:
            fig.savefig(tmp, format="png")
        written.append(folder / name)
    return written
