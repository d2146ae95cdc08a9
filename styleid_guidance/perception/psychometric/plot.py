"""Figures of the psychometric fits: one panel per (method, style) with the observed recognition rate
(Clopper–Pearson 95 % error bars, marker area ∝ trials), the fitted curve, the target line, and the
threshold with its credible interval (or a note saying why it is censored).

Drawn on `matplotlib.figure.Figure` objects, never pyplot: no global backend or figure state changes.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .fit import GUESS, CellFit
from .trials import LEVELS


def binomial_interval(k: np.ndarray, n: np.ndarray, mass: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Clopper–Pearson (exact) interval of k successes out of n."""
    from scipy.stats import beta

    k, n = np.asarray(k, float), np.asarray(n, float)
    a = (1 - mass) / 2
    lo = np.where(k > 0, beta.ppf(a, k, n - k + 1), 0.0)
    hi = np.where(k < n, beta.ppf(1 - a, k + 1, n - k), 1.0)
    return lo, hi


def draw_cell(ax: "object", cell: CellFit, title: bool = True) -> None:
    levels = np.array(sorted(cell.counts), float)
    k = np.array([cell.counts[int(lvl)][0] for lvl in levels], float)
    n = np.array([cell.counts[int(lvl)][1] for lvl in levels], float)
    rate = k / n
    lo, hi = binomial_interval(k, n)
    ax.axhline(cell.target, color="0.5", ls="--", lw=1, label=f"target {cell.target:g}")
    ax.axhline(GUESS, color="0.75", ls=":", lw=1)
    if cell.threshold is not None and cell.threshold_ci is not None:
        ax.axvspan(*cell.threshold_ci, color="tab:orange", alpha=0.18, lw=0, label="threshold credible interval")
        ax.axvline(cell.threshold, color="tab:orange", lw=1.5, label="threshold")
    if cell.curve is not None:  # solid over the tested levels, dashed where it extrapolates
        xs, ys = cell.curve
        inside = (xs >= levels.min()) & (xs <= levels.max())
        ax.plot(xs[inside], ys[inside], color="tab:blue", lw=1.8, label="fit")
        for part in (xs < levels.min(), xs > levels.max()):
            if part.any():
                ax.plot(xs[part], ys[part], color="tab:blue", lw=1, ls="--", alpha=0.6)
    ax.errorbar(levels, rate, yerr=[rate - lo, hi - rate], fmt="none", ecolor="k", elinewidth=1, capsize=2)
    ax.scatter(levels, rate, s=12 + 60 * n / n.max(), color="k", zorder=3, label="observed ± 95 % CI")
    for i, lvl in enumerate(cell.levels_kept):
        ax.axvspan(lvl - 0.5, lvl + 0.5, ymin=0, ymax=0.025, color="tab:green", lw=0, label="levels kept" if i == 0 else None)
    if cell.threshold is not None and cell.threshold_ci is not None:
        verdict = f"threshold {cell.threshold:.2f} [{cell.threshold_ci[0]:.2f}, {cell.threshold_ci[1]:.2f}]"
    else:
        verdict = {"above_range": f"threshold > {int(levels.max())}: censored",
                   "below_range": f"threshold < {int(levels.min())}: censored",
                   "not_reached": f"never reaches {cell.target:g}",
                   "too_few_levels": "too few levels to fit"}.get(cell.censored or "", "")
    ax.set_xlim(0.5, max(LEVELS) + 0.5)
    ax.set_ylim(0.35, 1.03)
    ax.set_xticks(list(LEVELS))
    if title:
        ax.set_title(f"{cell.method} / {cell.style} (n={cell.n})\n{verdict}", fontsize=9)


def save_cell_plot(cell: CellFit, path: str | os.PathLike) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.2), dpi=110)
    ax = fig.add_subplot()
    draw_cell(ax, cell)
    ax.set_xlabel("strength level")
    ax.set_ylabel("2AFC recognition rate")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return Path(path)


def save_overview(cells: Sequence[CellFit], path: str | os.PathLike, columns: int = 4) -> Path:
    """All cells in one multi-panel PNG."""
    from matplotlib.figure import Figure

    columns = max(1, min(columns, len(cells)))
    rows = math.ceil(len(cells) / columns)
    fig = Figure(figsize=(3.1 * columns, 2.5 * rows + 0.4), dpi=110)
    axes = fig.subplots(rows, columns, squeeze=False, sharex=True, sharey=True)
    for ax, cell in zip(axes.flat, cells):
        draw_cell(ax, cell)
    for ax in list(axes.flat)[len(cells):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("strength level")
    for ax in axes[:, 0]:
        ax.set_ylabel("recognition rate")
    legend: dict[str, object] = {}
    for ax in axes.flat:  # one entry per kind of mark, whichever panel has it
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    fig.legend(list(legend.values()), list(legend), loc="upper center", ncol=len(legend), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / (2.5 * rows + 0.4)))
    fig.savefig(path, format="png")
    return Path(path)
