"""The eval output folder as one set: metrics.json, table.md, scores.csv and the plots always belong
to the same run.

The report is written into a temp folder beside OUT and swapped in whole (files.atomic.replace_dir), so a
kill leaves either the old set or the new one, never new metrics beside old plots, and a file the new
run does not produce (say similarity_vs_strength.png without a strength column) is gone. The embedding
cache inside OUT is carried into the new set by hard links (its files are only ever replaced by
rename, never rewritten in place, so the old set keeps its copy until the swap). Because the whole
folder is replaced, OUT may hold only what eval writes: anything else is refused before the work.
"""
from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import StyleIDError
from ..files.atomic import replace_dir, temp_dir_for
from .pairs import GROUPS, Pair

REPORT_FILES = ("metrics.json", "table.md", "scores.csv")


def _ours(entry: Path, keep: set[str]) -> bool:
    return entry.name in REPORT_FILES or entry.name in keep or (entry.suffix == ".png" and entry.is_file())


def recover(out: Path) -> None:
    """A kill between replace_dir's two renames leaves OUT missing and `.old-OUT` holding the last set."""
    old = out.with_name(f".old-{out.name}")
    if not out.exists() and old.is_dir():
        os.replace(old, out)


def check_output_folder(out: Path, keep: set[str]) -> None:
    """OUT must be a folder eval can own (new, empty, or an earlier eval's), and its parent writable."""
    recover(out)
    if out.exists() and not out.is_dir():
        raise StyleIDError(f"{out}: is a file; the output must be a folder")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if not _ours(p, keep))
        if foreign:
            raise StyleIDError(f"{out}: holds {foreign[0]!r}{f' and {len(foreign) - 1} more' if len(foreign) > 1 else ''}, "
                               "which eval did not write; eval replaces its output folder as a whole, so choose a new or "
                               "earlier eval output folder")
    parent = out.parent if out.parent != Path("") else Path(".")
    if parent.exists() and not os.access(parent, os.W_OK | os.X_OK):
        raise StyleIDError(f"{out}: cannot write in {parent} (permission denied); choose another output folder")


def new_report_dir(out: Path) -> Path:
    """The temp folder the new set is written into (beside OUT: same file system, atomic rename)."""
    try:
        return temp_dir_for(out)
    except OSError as err:
        raise StyleIDError(f"{out}: cannot be written ({err.strerror or type(err).__name__}); choose another output folder") from None


def _link_tree(src: Path, dest: Path) -> None:
    for path in sorted(src.rglob("*")):
        target = dest / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif path.is_file() and not path.name.endswith(".tmp"):
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, target)
            except OSError:  # no hard links here (some network/FAT file systems): a copy is only slower
                shutil.copy2(path, target)


def publish(tmp: Path, out: Path, keep: set[str]) -> None:
    """Carry the kept folders (the embedding cache) into `tmp`, then make `tmp` the new OUT."""
    for name in keep:
        if (out / name).is_dir():
            _link_tree(out / name, tmp / name)
    replace_dir(tmp, out)


# -- scores.csv: every pair's columns as written in pairs.csv, plus one similarity column per model (named
# as in metrics.json), so any number in the report can be recomputed or plotted elsewhere.

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
