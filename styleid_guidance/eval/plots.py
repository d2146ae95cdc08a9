"""The plots people look at: ROC curves, similarity against strength, and similarity against people."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..files.atomic import atomic_write
from ..metrics.verification import roc_curve, verification_report
from .pairs import Pair
from .report import group_order, human_rates


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # headless: files only
    import matplotlib.pyplot as plt

    return plt


def _colours() -> list[str]:
    return _pyplot().rcParams["axes.prop_cycle"].by_key()["color"]


def _save_figure(fig: Any, path: Path) -> None:
    plt = _pyplot()
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def plot_roc(scores: dict[str, np.ndarray], labels: np.ndarray, path: Path, log_fpr: bool) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for name, s in scores.items():
        fpr, tpr, _ = roc_curve(s, labels)
        auc = verification_report(s, labels)["auroc"]
        if log_fpr:
            keep = fpr > 0
            ax.step(fpr[keep], tpr[keep], where="post", label=f"{name} (AUROC {auc:.3f})")
        else:
            ax.plot(fpr, tpr, label=f"{name} (AUROC {auc:.3f})")
    if log_fpr:
        n_neg = int((labels == 0).sum())
        ax.set_xscale("log")
        # from the smallest FPR the negatives can resolve, and at least two decades wide
        ax.set_xlim(min(max(1e-4, 0.5 / max(n_neg, 1)), 1e-2), 1.0)
        ax.axvline(1e-2, color="grey", lw=0.8, ls=":")
    else:
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
        ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate" + (" (log)" if log_fpr else ""))
    ax.set_ylabel("true positive rate")
    ax.set_title(f"ROC, {len(labels)} pairs")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    _save_figure(fig, path)


def plot_similarity_vs_strength(pairs: Sequence[Pair], scores: dict[str, np.ndarray], path: Path) -> bool:
    """One panel per method; x = strength, y = mean cosine of same (solid) / different (dashed) pairs."""
    if all(p.strength is None for p in pairs):
        return False
    plt = _pyplot()
    methods = group_order([p.method or "all" for p in pairs])
    fig, axes = plt.subplots(1, len(methods), figsize=(4 * len(methods), 3.6), squeeze=False, sharey=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, method in zip(axes[0], methods):
        sel = [i for i, p in enumerate(pairs) if (p.method or "all") == method and p.strength is not None]
        levels = group_order([pairs[i].strength for i in sel])
        try:
            xs = [float(v) for v in levels]
        except ValueError:
            xs = list(range(len(levels)))
            ax.set_xticks(xs, levels)
        for k, (name, s) in enumerate(scores.items()):
            for label, style in ((1, "-"), (0, "--")):
                ys = []
                for level in levels:
                    vals = [s[i] for i in sel if pairs[i].strength == level and pairs[i].label == label]
                    ys.append(float(np.mean(vals)) if vals else np.nan)
                ax.plot(xs, ys, style, marker="o", ms=3, color=colours[k % len(colours)],
                        alpha=1.0 if label else 0.5, label=name if label else None)
        ax.set_title(method)
        ax.set_xlabel("strength")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("mean cosine (solid: same, dashed: different)")
    axes[0][-1].legend(fontsize=8)
    _save_figure(fig, path)
    return True



def _levels_axis(ax: Any, levels: list[str]) -> list[float]:
    try:
        xs = [float(v) for v in levels]
        ax.set_xticks(xs, levels)  # strengths are discrete levels, not a continuum
        return xs
    except ValueError:
        xs = list(range(len(levels)))
        ax.set_xticks(xs, levels)
        return [float(x) for x in xs]


def plot_human_scatter(pairs: Sequence[Pair], scores: dict[str, np.ndarray], metrics: dict[str, Any], path: Path) -> bool:
    """One panel per model: similarity (x) against the human "same" rate (y), coloured by the true
    label, with the fitted logistic P(rater says same) and the rank correlations in the title."""
    human = human_rates(pairs)
    has = np.isfinite(human)
    if not has.any():
        return False
    plt = _pyplot()
    labels = np.array([p.label for p in pairs])
    binary = bool(np.isin(human[has], (0.0, 1.0)).all())
    # 0/1 verdicts pile up on two lines: a small fixed jitter shows how many there are
    jitter = np.random.default_rng(0).uniform(-0.03, 0.03, len(pairs)) if binary else np.zeros(len(pairs))
    fig, axes = plt.subplots(1, len(scores), figsize=(4 * len(scores), 3.8), squeeze=False, sharey=True, layout="constrained")
    for ax, (name, s) in zip(axes[0], scores.items()):
        for label, colour, text in ((1, "tab:green", "same identity"), (0, "tab:red", "different identity")):
            sel = has & (labels == label)
            ax.scatter(s[sel], human[sel] + jitter[sel], s=9, alpha=0.5, color=colour, label=text, linewidths=0)
        h = metrics.get(name, {}).get("human", {})
        cal = h.get("calibration")
        if cal:
            xs = np.linspace(min(s[has].min(), -0.1), max(s[has].max(), 1.0), 200)
            ax.plot(xs, 1 / (1 + np.exp(-(cal["slope"] * xs + cal["intercept"]))), color="black", lw=1.2, label="logistic fit")
        rho, tau = h.get("spearman"), h.get("kendall")
        stats = f"ρ={rho:+.3f}, τ={tau:+.3f}" if rho is not None and tau is not None else "ρ, τ undefined"
        ax.set_title(f"{name}: {stats}", fontsize=9)
        ax.set_xlabel("cosine similarity")
        ax.set_ylim(-0.06, 1.06)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("human rate of 'same'" + (" (jittered)" if binary else ""))
    axes[0][-1].legend(fontsize=7, loc="lower right")
    _save_figure(fig, path)
    return True


def plot_human_vs_strength(pairs: Sequence[Pair], scores: dict[str, np.ndarray], path: Path) -> bool:
    """The paper's figure: per (method, style), the mean similarity of same-identity pairs against
    strength for every model (left axis), next to the human recognition rate of the same pairs
    (the mean "same" rate; right axis, black dashed)."""
    human = human_rates(pairs)
    sel_all = [i for i, p in enumerate(pairs) if p.label == 1 and p.strength is not None and np.isfinite(human[i])]
    if not sel_all:
        return False
    plt = _pyplot()
    panels = list(dict.fromkeys((pairs[i].method or "all", pairs[i].style or "all") for i in sel_all))
    ncols = min(4, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows), squeeze=False, sharey=True,
                             layout="constrained")
    colours = _colours()
    for k, (method, style) in enumerate(panels):
        ax = axes[k // ncols][k % ncols]
        sel = [i for i in sel_all if (pairs[i].method or "all", pairs[i].style or "all") == (method, style)]
        levels = group_order([pairs[i].strength for i in sel])
        xs = _levels_axis(ax, levels)
        for j, (name, s) in enumerate(scores.items()):
            ys = [float(np.mean([s[i] for i in sel if pairs[i].strength == lv])) for lv in levels]
            ax.plot(xs, ys, marker="o", ms=3, color=colours[j % len(colours)], label=name)
        rate = ax.twinx()
        ys = [float(np.mean([human[i] for i in sel if pairs[i].strength == lv])) for lv in levels]
        rate.plot(xs, ys, "--", marker="s", ms=3, color="black", label="human recognition rate")
        rate.set_ylim(0, 1.02)
        if k % ncols == ncols - 1 or k == len(panels) - 1:
            rate.set_ylabel("human recognition rate")
        else:
            rate.tick_params(labelright=False)  # one scale per row is enough; labels would run into the next panel
        ax.set_title(f"{method} / {style}", fontsize=9)
        if k + ncols >= len(panels):
            ax.set_xlabel("strength")
        ax.grid(alpha=0.3)
        if k == 0:
            handles = ax.get_legend_handles_labels()[0] + rate.get_legend_handles_labels()[0]
            ax.legend(handles, [h.get_label() for h in handles], fontsize=7, loc="lower left")
    for k in range(len(panels), nrows * ncols):
        axes[k // ncols][k % ncols].axis("off")
    for r in range(nrows):
        axes[r][0].set_ylabel("mean cosine, same identity")
    _save_figure(fig, path)
    return True
