"""Metrics per model and group, the Table-1 Markdown layout, and the plots people look at."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..images import atomic_write
from ..metrics import roc_curve, verification_report
from .pairs import GROUPS, Pair

TABLE_COLUMNS = ("tpr@1e-2", "acc@0.3", "acc@0.4", "acc@0.5", "auroc")


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN: an undefined metric (e.g. AUROC of an all-positive group) is null
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


def _group_order(values: list[str]) -> list[str]:
    unique = list(dict.fromkeys(values))
    try:
        return sorted(unique, key=float)
    except ValueError:
        return unique  # names keep their order of appearance in the CSV


def pair_scores(pairs: Sequence[Pair], embeddings: dict[Path, torch.Tensor]) -> np.ndarray:
    src = torch.stack([embeddings[p.source] for p in pairs])
    sty = torch.stack([embeddings[p.stylized] for p in pairs])
    return (src * sty).sum(-1).double().numpy()


def model_metrics(pairs: Sequence[Pair], scores: np.ndarray) -> dict[str, Any]:
    labels = np.array([p.label for p in pairs])
    out: dict[str, Any] = {"overall": verification_report(scores, labels)}
    for group in GROUPS:
        values = [getattr(p, group) for p in pairs]
        if all(v is None for v in values):
            continue
        entries = {}
        for value in _group_order([v for v in values if v is not None]):
            mask = np.array([v == value for v in values])
            entries[value] = verification_report(scores[mask], labels[mask])
        out[group] = entries
    return out


def _fmt(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "—"
    return f"{v:.3f}".lstrip("0") if 0 <= v < 1 else f"{v:.3f}"


def _pretty_split(name: str) -> str:
    return "-".join("ID" if w.lower() == "id" else w.capitalize() for w in name.split("-"))


def markdown_table(metrics: dict[str, dict[str, Any]]) -> str:
    """Rows = models, columns = splits (+ All), cells TPR@1e-2/Acc@0.3/Acc@0.4/Acc@0.5/AUROC."""
    first = next(iter(metrics.values()))
    splits = list(first.get("split", {}))
    columns = [(s, _pretty_split(s)) for s in splits] + ([("__all__", "All")] if len(splits) != 1 else [])

    def report(model: dict[str, Any], split: str) -> dict[str, Any]:
        return model["overall"] if split == "__all__" else model["split"][split]

    best = {}
    for split, _ in columns:
        aurocs = {name: report(m, split).get("auroc") for name, m in metrics.items()}
        finite = {k: v for k, v in aurocs.items() if v is not None and math.isfinite(v)}
        best[split] = max(finite, key=finite.get) if len(finite) > 1 else None
    lines = [
        "Each cell: TPR@FPR=1e-2 / Acc@0.3 / Acc@0.4 / Acc@0.5 / AUROC (bold: best AUROC in the column).",
        "",
        "| Model | " + " | ".join(title for _, title in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for name, model in metrics.items():
        cells = []
        for split, _ in columns:
            r = report(model, split)
            cell = "/".join(_fmt(r.get(k)) for k in TABLE_COLUMNS)
            cells.append(f"**{cell}**" if best[split] == name else cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    n = {split: report(first, split)["n"] for split, _ in columns}
    lines += ["", "Pairs per column: " + ", ".join(f"{title} {n[s]}" for s, title in columns) + "."]
    return "\n".join(lines) + "\n"


def _save_figure(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_write(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def plot_roc(scores: dict[str, np.ndarray], labels: np.ndarray, path: Path, log_fpr: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = _group_order([p.method or "all" for p in pairs])
    fig, axes = plt.subplots(1, len(methods), figsize=(4 * len(methods), 3.6), squeeze=False, sharey=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, method in zip(axes[0], methods):
        sel = [i for i, p in enumerate(pairs) if (p.method or "all") == method and p.strength is not None]
        levels = _group_order([pairs[i].strength for i in sel])
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

