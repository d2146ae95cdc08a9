"""The stimuli of a human study: a StyleBench-S-layout folder written by `styleid generate`.

    DATA/p3/{id}.png                    source photos
    DATA/{method}/{style}/{id}_{idx}.png stylized images
    DATA/manifest.jsonl                 one JSON object per stylized image: path (relative to DATA), id,
                                        method, style, level (1..7), optionally source (its photo; default
                                        p3/{id}.png), and more; records with "kind": "source" (the photos)
                                        are skipped; a later line for the same path wins
    DATA/pairs.csv (optional)           source,stylized,label,split,method,style,strength (paths relative
                                        to the CSV): the same/different pairs of the verification task

Every problem names the file and line. Paths are kept relative to DATA (the trial plan and the responses
file use them); they never reach a participant's browser.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import StyleIDError

MANIFEST = "manifest.jsonl"
PAIRS = "pairs.csv"
SOURCES = "p3"
LEVELS = tuple(range(1, 8))


@dataclass(frozen=True)
class Stylized:
    path: str  # relative to DATA, posix
    id: str
    method: str
    style: str
    level: int
    source: str  # the identity's photo, relative to DATA


@dataclass(frozen=True)
class Pair:
    """A same/different pair; `row` is its data-row number in pairs.csv (1 = first row after the header)."""

    source: str
    stylized: str
    label: int
    method: str
    style: str
    level: str
    row: int | None = None


@dataclass
class Dataset:
    root: Path
    stylized: list[Stylized]
    pairs: list[Pair] | None          # None: no pairs.csv (verification pairs are drawn from the manifest)
    fingerprint: str                   # sha256 of manifest (+ pairs): a results folder belongs to one data set
    cells: dict[tuple[str, str, int], dict[str, list[Stylized]]] = field(default_factory=dict)

    sources: dict[str, str] = field(default_factory=dict)  # identity → photo, relative to DATA

    def source_of(self, identity: str) -> str:
        return self.sources.get(identity, f"{SOURCES}/{identity}.png")

    def two_afc_cells(self) -> list[tuple[str, str, int]]:
        """(method, style, level) cells with at least two identities: a 2AFC trial needs a foil."""
        return sorted(c for c, ids in self.cells.items() if len(ids) >= 2)

    def file(self, rel: str) -> Path:
        return self.root / rel


def _inside(root: Path, rel: str) -> Path | None:
    """root/rel if it is a file under root (no absolute paths, no `..` escapes), else None."""
    if not rel or os.path.isabs(rel) or "\\" in rel:
        return None
    path = (root / rel).resolve()
    try:
        path.relative_to(root.resolve())
    except ValueError:
        return None
    return path if path.is_file() else None


def read_manifest(root: Path) -> list[Stylized]:
    path = root / MANIFEST
    if not path.is_file():
        raise StyleIDError(f"{root}: no {MANIFEST}; give the folder `styleid generate` wrote")
    records: dict[str, Stylized] = {}
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise StyleIDError(f"{path}: not UTF-8 text") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise StyleIDError(f"{path}:{number}: not a JSON object ({err.msg})") from None
        if not isinstance(obj, dict):
            raise StyleIDError(f"{path}:{number}: not a JSON object")
        if obj.get("kind") == "source":
            continue  # the photos are found through their stylizations
        missing = [k for k in ("path", "id", "method", "style", "level") if obj.get(k) in (None, "")]
        if missing:
            raise StyleIDError(f"{path}:{number}: missing {', '.join(missing)}")
        level = obj["level"]
        if isinstance(level, bool) or not isinstance(level, int) or level not in LEVELS:
            raise StyleIDError(f"{path}:{number}: level must be an integer from 1 to 7, got {level!r}")
        rel = str(obj["path"])
        if _inside(root, rel) is None:
            raise StyleIDError(f"{path}:{number}: image {rel!r} is not a file inside {root}")
        identity = str(obj["id"])
        source = str(obj.get("source") or f"{SOURCES}/{identity}.png")
        if _inside(root, source) is None:
            raise StyleIDError(f"{path}:{number}: source photo {source} is missing")
        rel = Path(rel).as_posix()
        records[rel] = Stylized(rel, identity, str(obj["method"]), str(obj["style"]), level, Path(source).as_posix())
    if not records:
        raise StyleIDError(f"{path}: no stylized images listed")
    return list(records.values())


def read_study_pairs(root: Path) -> list[Pair] | None:
    path = root / PAIRS
    if not path.is_file():
        return None
    pairs = []
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in ("source", "stylized", "label") if c not in columns]
        if missing:
            raise StyleIDError(f"{path}:1: missing column(s) {', '.join(missing)}")
        for row_number, row in enumerate(reader, start=1):
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            line = reader.line_num
            if row["label"] not in ("0", "1"):
                raise StyleIDError(f"{path}:{line}: label must be 0 or 1, got {row['label']!r}")
            rels = []
            for column in ("source", "stylized"):
                file = (root / row[column]).resolve()
                if not row[column] or not file.is_file():
                    raise StyleIDError(f"{path}:{line}: {column} image {row[column]!r} not found (paths are relative to the CSV)")
                rels.append(Path(os.path.relpath(file, root.resolve())).as_posix())
            pairs.append(Pair(rels[0], rels[1], int(row["label"]), row.get("method", ""), row.get("style", ""),
                              row.get("strength", ""), row_number))
    if not pairs:
        raise StyleIDError(f"{path}: no pairs after the header line")
    return pairs


def load_dataset(root: str | os.PathLike) -> Dataset:
    root = Path(root)
    if not root.is_dir():
        raise StyleIDError(f"{root}: no such folder")
    stylized = read_manifest(root)
    pairs = read_study_pairs(root)
    digest = hashlib.sha256((root / MANIFEST).read_bytes())
    if pairs is not None:
        digest.update((root / PAIRS).read_bytes())
    cells: dict[tuple[str, str, int], dict[str, list[Stylized]]] = defaultdict(lambda: defaultdict(list))
    for s in stylized:
        cells[(s.method, s.style, s.level)][s.id].append(s)
    frozen = {c: {i: sorted(v, key=lambda s: s.path) for i, v in sorted(ids.items())} for c, ids in sorted(cells.items())}
    sources = {s.id: s.source for s in stylized}
    return Dataset(root.resolve(), stylized, pairs, digest.hexdigest(), frozen, sources)
