"""Pair lists (StyleBench-H style): `source,stylized,label[,split,method,style,strength,human]` CSVs.

Paths are relative to the CSV. Every problem names the file and the row.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import StyleIDError

GROUPS = ("split", "method", "style", "strength")


@dataclass(frozen=True)
class Pair:
    source: Path
    stylized: Path
    label: int
    split: str | None = None
    method: str | None = None
    style: str | None = None
    strength: str | None = None
    human: str | None = None


def read_pairs(path: str | os.PathLike) -> list[Pair]:
    """Parse and check a pairs CSV; every problem names the file and row."""
    path = Path(path)
    if not path.is_file():
        raise StyleIDError(f"--pairs {path}: no such file")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in ("source", "stylized", "label") if c not in columns]
        if missing:
            raise StyleIDError(f"{path}: missing column(s) {', '.join(missing)} (need source,stylized,label)")
        pairs = []
        for row_number, row in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
            if row["label"] not in ("0", "1"):
                raise StyleIDError(f"{path}:{row_number}: label must be 0 or 1, got {row['label']!r}")
            files = []
            for column in ("source", "stylized"):
                file = (path.parent / row[column]).resolve()
                if not row[column] or not file.is_file():
                    raise StyleIDError(f"{path}:{row_number}: {column} image {row[column]!r} not found (paths are relative to the CSV)")
                files.append(file)
            extra = {c: (row.get(c) or None) for c in (*GROUPS, "human")}
            pairs.append(Pair(files[0], files[1], int(row["label"]), **extra))
    if not pairs:
        raise StyleIDError(f"{path}: no pairs")
    return pairs

