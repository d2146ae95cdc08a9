"""The 2AFC trials file `styleid psychometric` reads: `participant,method,style,level,correct[,rt_ms]`.

One row per answer (what `styleid study --export` writes, or any other study's results). Every problem
is one sentence naming the file and its line: a wrong encoding, a missing column, a level outside 1..7,
an answer that is not 0/1. A UTF-8 byte-order mark (what Excel writes for "CSV UTF-8") is accepted;
UTF-16/32 files are not, with the fix in the message.
"""
from __future__ import annotations

import csv
import io
import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ...errors import StyleIDError

COLUMNS = ("participant", "method", "style", "level", "correct")
OPTIONAL = ("rt_ms",)
LEVELS = tuple(range(1, 8))

_OTHER_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"), (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"))


@dataclass(frozen=True)
class Trial:
    participant: str
    method: str
    style: str
    level: int
    correct: int
    rt_ms: float | None = None


@dataclass(frozen=True)
class CellCounts:
    """The answers of one (method, style) cell, pooled over participants: level → (correct, total)."""

    method: str
    style: str
    counts: dict[int, tuple[int, int]]

    @property
    def n(self) -> int:
        return sum(total for _, total in self.counts.values())

    @property
    def observed(self) -> dict[int, float]:
        return {level: k / n for level, (k, n) in sorted(self.counts.items())}


def _decode(path: Path) -> str:
    data = path.read_bytes()
    if not data.strip():
        raise StyleIDError(f"{path}: the file is empty; expected a header line {','.join(COLUMNS)}[,rt_ms] and one row per answer")
    for bom, name in _OTHER_BOMS:
        if data.startswith(bom):
            raise StyleIDError(f"{path}: the file is {name} (byte-order mark); save it as UTF-8 CSV")
    try:
        text = data.decode("utf-8-sig")  # a UTF-8 BOM is harmless: Excel's "CSV UTF-8" writes one
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise StyleIDError(f"{path}:{line}: not UTF-8 text (byte 0x{data[err.start]:02x}); save the file as UTF-8 CSV") from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise StyleIDError(f"{path}:{line}: NUL byte in the file; is it a spreadsheet or a UTF-16 file? Save it as UTF-8 CSV")
    return text


def _level(text: str) -> int | None:
    try:
        value = float(text)
    except ValueError:
        return None
    if not math.isfinite(value) or value != int(value) or int(value) not in LEVELS:
        return None
    return int(value)


def read_trials(path: str | os.PathLike) -> list[Trial]:
    """Parse and check a trials CSV; raises StyleIDError naming the line of the first problem."""
    path = Path(path)
    if not path.is_file():
        raise StyleIDError(f"{path}: no such file")
    reader = csv.reader(io.StringIO(_decode(path), newline=""))
    try:
        header = [c.strip() for c in next(reader)]
    except (StopIteration, csv.Error) as err:
        raise StyleIDError(f"{path}:1: cannot read the header line ({err})") from None
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise StyleIDError(f"{path}:1: missing column(s) {', '.join(missing)} (need {','.join(COLUMNS)}[,rt_ms]; got {','.join(header)})")
    dupes = sorted(c for c, n in Counter(header).items() if n > 1 and c in (*COLUMNS, *OPTIONAL))
    if dupes:
        raise StyleIDError(f"{path}:1: column(s) {', '.join(dupes)} appear more than once")
    index = {c: header.index(c) for c in (*COLUMNS, *OPTIONAL) if c in header}
    trials: list[Trial] = []
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            raise StyleIDError(f"{path}:{reader.line_num}: not a valid CSV row ({err})") from None
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue  # blank line
        if len(row) != len(header):
            raise StyleIDError(f"{path}:{line}: {len(row)} fields, the header has {len(header)}")
        cell = {c: row[i].strip() for c, i in index.items()}
        for column in ("participant", "method", "style"):
            if not cell[column]:
                raise StyleIDError(f"{path}:{line}: empty {column}")
        level = _level(cell["level"])
        if level is None:
            raise StyleIDError(f"{path}:{line}: level must be an integer from 1 to 7, got {cell['level']!r}")
        if cell["correct"] not in ("0", "1"):
            raise StyleIDError(f"{path}:{line}: correct must be 0 or 1, got {cell['correct']!r}")
        rt = None
        if cell.get("rt_ms"):
            try:
                rt = float(cell["rt_ms"])
            except ValueError:
                rt = -1.0
            if not (math.isfinite(rt) and rt >= 0):
                raise StyleIDError(f"{path}:{line}: rt_ms must be a number of milliseconds ≥ 0 (or empty), got {cell['rt_ms']!r}")
        trials.append(Trial(cell["participant"], cell["method"], cell["style"], level, int(cell["correct"]), rt))
    if not trials:
        raise StyleIDError(f"{path}: no trials after the header line")
    return trials


def cell_counts(trials: list[Trial]) -> list[CellCounts]:
    """Pool the trials per (method, style), sorted by method then style."""
    pooled: dict[tuple[str, str], dict[int, list[int]]] = {}
    for t in trials:
        per_level = pooled.setdefault((t.method, t.style), {})
        k_n = per_level.setdefault(t.level, [0, 0])
        k_n[0] += t.correct
        k_n[1] += 1
    return [CellCounts(m, s, {lvl: (k, n) for lvl, (k, n) in sorted(levels.items())})
            for (m, s), levels in sorted(pooled.items())]
