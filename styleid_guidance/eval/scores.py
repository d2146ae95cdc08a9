"""scores.csv: every pair's columns as written in pairs.csv, plus one similarity column per model (named
as in metrics.json), so any number in the report can be recomputed or plotted elsewhere."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import StyleIDError
from .pairs import GROUPS, Pair

SCORES_FILE = "scores.csv"


def pair_columns(pairs: Sequence[Pair]) -> list[str]:
    """The CSV's own columns (in its order), or the Pair fields for pairs built in memory."""
    columns = list(dict.fromkeys(c for p in pairs for c, _ in p.row))
    if columns:
        return columns
    return ["source", "stylized", "label", *(g for g in GROUPS if any(getattr(p, g) is not None for p in pairs)),
            *(["human"] if any(p.human is not None for p in pairs) else []),
            *(["human_n"] if any(p.human_n is not None for p in pairs) else [])]


def check_model_names(pairs: Sequence[Pair], names: Sequence[str]) -> None:
    clash = [n for n in names if n in pair_columns(pairs)]
    if clash:
        raise StyleIDError(f"model name {clash[0]!r} is also a column of the pairs CSV; give the model another name")


def _value(pair: Pair, column: str) -> str:
    if column in ("source", "stylized"):
        return str(getattr(pair, column))
    value = getattr(pair, column, None)
    return "" if value is None else str(value)


def write_scores(path: Path, pairs: Sequence[Pair], scores: dict[str, np.ndarray]) -> None:
    columns = pair_columns(pairs)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([*columns, *scores])
        for i, pair in enumerate(pairs):
            row = dict(pair.row) if pair.row else {c: _value(pair, c) for c in columns}
            # repr of a float round-trips exactly: recomputing from the file gives the same numbers
            writer.writerow([*(row.get(c, "") for c in columns), *(repr(float(s[i])) for s in scores.values())])
