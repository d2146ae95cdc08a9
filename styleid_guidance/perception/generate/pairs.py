"""pairs.csv for a StyleBench-H-style human study (and for `styleid eval`) from a generated dataset.

Balanced by construction: every stylised image X of identity A in a (method, style, level) cell gives two
rows with A's source photo: (p3/A, X, label 1) and (p3/A, Y, label 0), where Y is the stylisation of
another identity B at the *same* cell. Matching the cell means a "different" answer cannot come from the
style or the strength alone. B is a deterministic choice from (seed, cell, A). Cells with one identity
give no pairs. Columns: source,stylized,label,split,method,style,strength (paths relative to the CSV, the
format `styleid eval --pairs` reads); split is "generated".
"""
from __future__ import annotations

import csv
import io
import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

from ...files.atomic import atomic_write
from ..layout import source_relpath, stable_fraction

COLUMNS = ("source", "stylized", "label", "split", "method", "style", "strength")
SPLIT = "generated"


def pair_rows(records: dict[str, dict[str, Any]], cells: Sequence[tuple[str, str, int]], seed: int) -> tuple[list[dict], int]:
    """(rows with paths relative to the dataset root, number of cells with too few identities)."""
    wanted = set(cells)
    sources = {r["id"] for r in records.values() if r.get("kind") == "source"}
    by_cell: dict[tuple[str, str, int], dict[str, str]] = defaultdict(dict)
    for path, r in records.items():
        cell = (r.get("method"), r.get("style"), r.get("level"))
        if r.get("kind") == "stylized" and cell in wanted and r.get("id") in sources:
            by_cell[cell][r["id"]] = path  # type: ignore[index]
    rows, lonely = [], 0
    for cell in sorted(by_cell):
        images = by_cell[cell]
        ids = sorted(images)
        if len(ids) < 2:
            lonely += 1
            continue
        method, style, level = cell
        for a in ids:
            others = [b for b in ids if b != a]
            b = others[int(stable_fraction(seed, "pairs", method, style, level, a) * len(others))]
            for stylized, label in ((images[a], 1), (images[b], 0)):
                rows.append({"source": source_relpath(a), "stylized": stylized, "label": label, "split": SPLIT,
                             "method": method, "style": style, "strength": level})
    return rows, lonely


def write_pairs(csv_path: str | os.PathLike, root: str | os.PathLike, records: dict[str, dict[str, Any]],
                cells: Sequence[tuple[str, str, int]], seed: int) -> tuple[int, int]:
    """Write the pairs CSV atomically; returns (rows written, cells without a second identity)."""
    csv_path, root = Path(csv_path), Path(root)
    rows, lonely = pair_rows(records, cells, seed)
    base = csv_path.resolve().parent
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        for column in ("source", "stylized"):
            row[column] = Path(os.path.relpath((root / row[column]).resolve(), base)).as_posix()
        writer.writerow(row)
    with atomic_write(csv_path) as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
    return len(rows), lonely
