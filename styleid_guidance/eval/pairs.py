"""Pair lists (StyleBench-H style): `source,stylized,label[,split,method,style,strength,human]` CSVs.

Paths are relative to the CSV. `human` is the fraction of people who judged the pair "same" (or a 0/1
verdict); an empty cell means no human judgement for that pair. An optional `human_n` says how many
people judged it (as `styleid study export` writes it); it weights the calibration fit. The file may carry a UTF-8 byte-order
mark (Excel's "CSV UTF-8"). Every problem is one line naming the file and the row.
"""
from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import StyleIDError

GROUPS = ("split", "method", "style", "strength")
REQUIRED = ("source", "stylized", "label")


@dataclass(frozen=True)
class Pair:
    source: Path
    stylized: Path
    label: int
    split: str | None = None
    method: str | None = None
    style: str | None = None
    strength: str | None = None
    human: float | None = None
    human_n: int | None = None
    # the CSV row as written (column, text), so per-pair outputs can repeat it verbatim
    row: tuple[tuple[str, str], ...] = field(default=(), compare=False, repr=False)


def _read_text(path: Path) -> str:
    if not path.exists():
        raise StyleIDError(f"{path}: no such file")
    if path.is_dir():
        raise StyleIDError(f"{path}: is a folder; expected a pairs CSV file")
    try:
        return path.read_bytes().decode("utf-8-sig")  # -sig: a leading byte-order mark is not part of "source"
    except UnicodeDecodeError as err:
        raise StyleIDError(f"{path}: not UTF-8 text (byte {err.start}); save it as UTF-8 CSV") from None
    except OSError as err:
        raise StyleIDError(f"{path}: cannot be read ({err.strerror or type(err).__name__})") from None


def parse_human(text: str, where: str) -> float | None:
    """'' → None; '0.75' → 0.75; anything not a number in [0, 1] is an error naming `where`."""
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise StyleIDError(f"{where}: human must be a number from 0 to 1 (the fraction judging 'same', or a 0/1 verdict), "
                           f"got {text!r}")
    return value


def parse_raters(text: str, human: float | None, where: str) -> int | None:
    """'' → None; a whole number ≥ 0, and ≥ 1 where there is a human rate."""
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0 or (human is not None and value == 0):
        raise StyleIDError(f"{where}: human_n must be the number of people who judged the pair "
                           f"({'at least 1 where human is given' if human is not None else 'a whole number'}), got {text!r}")
    return value


def read_pairs(path: str | os.PathLike) -> list[Pair]:
    """Parse and check a pairs CSV; every problem names the file and row."""
    path = Path(path)
    text = _read_text(path)
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        columns = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in REQUIRED if c not in columns]
        if missing:
            raise StyleIDError(f"{path}: missing column(s) {', '.join(missing)} (need source,stylized,label)")
        pairs = []
        for row_number, raw in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in raw.items() if k and isinstance(v, (str, type(None)))}
            where = f"{path}:{row_number}"
            if row["label"] not in ("0", "1"):
                raise StyleIDError(f"{where}: label must be 0 or 1, got {row['label']!r}")
            files = []
            for column in ("source", "stylized"):
                file = (path.parent / row[column]).resolve()
                if not row[column] or not file.is_file():
                    raise StyleIDError(f"{where}: {column} image {row[column]!r} not found (paths are relative to the CSV)")
                files.append(file)
            extra = {c: (row.get(c) or None) for c in GROUPS}
            human = parse_human(row.get("human", ""), where)
            raters = parse_raters(row.get("human_n", ""), human, where)
            written = tuple((c, row.get(c, "")) for c in columns if c)
            pairs.append(Pair(files[0], files[1], int(row["label"]), **extra, human=human, human_n=raters, row=written))
    except csv.Error as err:
        raise StyleIDError(f"{path}: not a readable CSV ({err})") from None
    if not pairs:
        raise StyleIDError(f"{path}: no pairs")
    return pairs
