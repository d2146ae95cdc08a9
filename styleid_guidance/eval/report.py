"""Metrics per model and group, and the Markdown tables (Table 1's layout, human alignment)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..metrics.verification import verification_report
from .human import human_alignment
from .pairs import GROUPS, Pair

TABLE_COLUMNS = ("tpr@1e-2", "acc@0.3", "acc@0.4", "acc@0.5", "auroc")
PAPER_SPLITS = ("cross-id", "cross-style", "cross-method")


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN: an undefined metric (e.g. AUROC of an all-positive group) is null
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


def group_order(values: list[str]) -> list[str]:
    unique = list(dict.fromkeys(values))
    try:
        return sorted(unique, key=float)
    except ValueError:
        return unique  # names keep their order of appearance in the CSV


def pair_scores(pairs: Sequence[Pair], embeddings: dict[Path, torch.Tensor]) -> np.ndarray:
    src = torch.stack([embeddings[p.source] for p in pairs])
    sty = torch.stack([embeddings[p.stylized] for p in pairs])
    return (src * sty).sum(-1).double().numpy()


def human_rates(pairs: Sequence[Pair]) -> np.ndarray:
    return np.array([np.nan if p.human is None else p.human for p in pairs], np.float64)


def human_raters(pairs: Sequence[Pair]) -> np.ndarray | None:
    """People per pair (NaN where unknown), or None when the CSV has no human_n."""
    if all(p.human_n is None for p in pairs):
        return None
    return np.array([np.nan if p.human_n is None else p.human_n for p in pairs], np.float64)


def has_human(pairs: Sequence[Pair]) -> bool:
    return any(p.human is not None for p in pairs)


def model_metrics(pairs: Sequence[Pair], scores: np.ndarray) -> dict[str, Any]:
    """{"overall": report, ["human": alignment,] group: {value: report (+ "human")}} for one model."""
    labels = np.array([p.label for p in pairs])
    human = human_rates(pairs) if has_human(pairs) else None
    raters = human_raters(pairs)
    out: dict[str, Any] = {"overall": verification_report(scores, labels)}
    if human is not None:
        out["human"] = human_alignment(scores, human, raters)
    for group in GROUPS:
        values = [getattr(p, group) for p in pairs]
        if all(v is None for v in values):
            continue
        entries = {}
        for value in group_order([v for v in values if v is not None]):
            mask = np.array([v == value for v in values])
            entries[value] = verification_report(scores[mask], labels[mask])
            if human is not None:
                entries[value]["human"] = human_alignment(scores[mask], human[mask], None if raters is None else raters[mask])
        out[group] = entries
    return out


def _fmt(v: float | None, signed: bool = False) -> str:
    if v is None or not math.isfinite(v):
        return "—"
    if signed:
        return f"{v:+.3f}"
    return f"{v:.3f}".lstrip("0") if 0 <= v < 1 else f"{v:.3f}"


def pretty_split(name: str) -> str:
    return "-".join("ID" if w.lower() == "id" else w.capitalize() for w in name.split("-"))


def markdown_table(metrics: dict[str, dict[str, Any]], splits: Sequence[str] | None = None, total: bool | None = None) -> str:
    """Rows = models, columns = splits (+ All), cells TPR@1e-2/Acc@0.3/Acc@0.4/Acc@0.5/AUROC.

    splits: the columns (default: the splits in the data); total: add an "All" column (default: unless
    there is exactly one split). A split missing from the data shows "—"."""
    first = next(iter(metrics.values()))
    splits = list(first.get("split", {})) if splits is None else list(splits)
    total = len(splits) != 1 if total is None else total
    columns = [(s, pretty_split(s)) for s in splits] + ([("__all__", "All")] if total else [])

    def report(model: dict[str, Any], split: str) -> dict[str, Any]:
        return model["overall"] if split == "__all__" else model.get("split", {}).get(split, {})

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
    n = {split: report(first, split).get("n", 0) for split, _ in columns}
    lines += ["", "Pairs per column: " + ", ".join(f"{title} {n[s]}" for s, title in columns) + "."]
    return "\n".join(lines) + "\n"


def human_table(metrics: dict[str, dict[str, Any]]) -> str:
    """Overall alignment with the human judgements, then Spearman ρ per split; '' without human data."""
    rows = {name: m["human"] for name, m in metrics.items() if m.get("human", {}).get("n")}
    if not rows:
        return ""
    lines = [
        "Human alignment (pairs with a `human` rate): rank correlation with the rate, agreement of the verdict at a "
        "fixed threshold with the human majority, and a logistic fit similarity → P(rater says same) "
        "(p50: the similarity where that is 1/2; Brier of one judgement; ECE over 10 bins).",
        "",
        "| Model | Spearman ρ | Kendall τ-b | Agree@0.3 | Agree@0.4 | Agree@0.5 | p50 | Brier | ECE | n |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    best = max((n for n in rows if rows[n].get("spearman") is not None), key=lambda n: rows[n]["spearman"], default=None)
    for name, h in rows.items():
        cal = h.get("calibration") or {}
        rho = _fmt(h.get("spearman"), signed=True)
        cells = [f"**{rho}**" if name == best and len(rows) > 1 else rho, _fmt(h.get("kendall"), signed=True),
                 *(_fmt(h.get(f"agree@{t}")) for t in (0.3, 0.4, 0.5)),
                 _fmt(cal.get("p50"), signed=True), _fmt(cal.get("brier")), _fmt(cal.get("ece")), str(h["n"])]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    splits = list(next(iter(metrics.values())).get("split", {}))
    if splits:
        lines += ["", "Spearman ρ / Kendall τ-b per split:", "",
                  "| Model | " + " | ".join(pretty_split(s) for s in splits) + " |", "|---|" + "---|" * len(splits)]
        for name in rows:
            cells = []
            for s in splits:
                h = metrics[name]["split"][s].get("human", {})
                cells.append(f"{_fmt(h.get('spearman'), signed=True)} / {_fmt(h.get('kendall'), signed=True)}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
