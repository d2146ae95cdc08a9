"""Which reference each generated image is compared with.

- one: a single reference (an image, or a one-row embeddings file) against every generated image;
- name: folder ↔ folder (or embeddings files) by relative path without the suffix (`a/1.png` ↔ `a/1.jpg`);
- pairs: a CSV with `reference,generated` columns (or eval's `source,stylized`) naming entries of REF and GEN;
- reference-set: several photos of one person; every generated image against their mean embedding.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import Arg, StyleIDError
from .sources import Source

MEAN = -1  # the reference index of the reference set's mean embedding
COLUMNS = (("reference", "generated"), ("source", "stylized"))
SHOWN = 3  # names quoted in an "unpaired" message


@dataclass
class Pairing:
    mode: str  # "one" | "name" | "pairs" | "reference-set"
    pairs: list[tuple[int, int]]  # (reference index or MEAN, generated index)


def _first(names: list[str]) -> str:
    return ", ".join(names[:SHOWN]) + (", ..." if len(names) > SHOWN else "")


def _key(name: str) -> str:
    return str(PurePosixPath(name).with_suffix(""))


def _by_name(ref: Source, gen: Source) -> list[tuple[int, int]]:
    keys: dict[str, int] = {}
    for i, name in enumerate(ref.names):
        if _key(name) in keys:
            raise StyleIDError("{where}: {a} and {b} have the same name; pairing by name needs one reference per name "
                               "(rename one, or pass {pairs})", where=ref.where, a=ref.names[keys[_key(name)]], b=name,
                               pairs=Arg("pairs", metavar="CSV"))
        keys[_key(name)] = i
    pairs, unpaired = [], []
    for j, name in enumerate(gen.names):
        if _key(name) in keys:
            pairs.append((keys[_key(name)], j))
        else:
            unpaired.append(name)
    used = {i for i, _ in pairs}
    unused = [n for i, n in enumerate(ref.names) if i not in used]
    if unpaired or unused:
        what = (f"{len(unpaired)} of {len(gen)} generated images in {gen.where} have no reference of the same name "
                f"(first: {_first(unpaired)})" if unpaired else
                f"{len(unused)} of {len(ref)} references in {ref.where} have no generated image of the same name "
                f"(first: {_first(unused)})")
        raise StyleIDError("{what}; name them alike, pass {pairs}, or {reference_set} for several photos of one person",
                           what=what, pairs=Arg("pairs", metavar="CSV"), reference_set=Arg("reference_set", True))
    return pairs


def read_pairs_csv(text: str, where: str) -> list[tuple[str, str]]:
    """(reference name, generated name) rows of a pairs CSV's text; a one-line error for anything malformed."""
    try:
        rows = list(csv.DictReader(io.StringIO(text)))
    except csv.Error as err:
        raise StyleIDError(f"{where}: not a readable CSV ({err})") from None
    header = set(rows[0]) if rows else set()
    cols = next((c for c in COLUMNS if set(c) <= header), None)
    if cols is None:
        raise StyleIDError(f"{where}: needs a header with reference,generated (or source,stylized) columns and at least one row")
    out = []
    for n, row in enumerate(rows, start=2):
        a, b = (row.get(c) for c in cols)
        if not isinstance(a, str) or not isinstance(b, str) or not a.strip() or not b.strip():
            raise StyleIDError(f"{where}: line {n}: empty or missing {cols[0]} / {cols[1]}")
        out.append((a.strip(), b.strip()))
    return out


def _index(source: Source, name: str, root: Path) -> int | None:
    """Row of `name` in `source`: as stored, or (for folders) a path relative to the CSV that lies inside it."""
    lookup = {n: i for i, n in enumerate(source.names)}
    if name in lookup:
        return lookup[name]
    if source.kind == "folder":
        try:
            rel = (root / name).resolve().relative_to(Path(source.where).resolve()).as_posix()
        except ValueError:
            return None
        return lookup.get(rel)
    if source.kind in ("image", "video") and (root / name).resolve() == source.files[0].resolve():
        return 0
    return None


def _from_csv(ref: Source, gen: Source, csv_path: str | Path) -> list[tuple[int, int]]:
    path = Path(csv_path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise StyleIDError(f"{path}: cannot read the pairs CSV ({type(err).__name__})") from None
    pairs, missing = [], []
    for a, b in read_pairs_csv(text, str(path)):
        i, j = _index(ref, a, path.parent), _index(gen, b, path.parent)
        if i is None:
            missing.append(f"{a} (not in {ref.where})")
        if j is None:
            missing.append(f"{b} (not in {gen.where})")
        if i is not None and j is not None:
            pairs.append((i, j))
    if missing:
        raise StyleIDError(f"{path}: {len(missing)} names not found: {_first(missing)}; names are paths inside REF and GEN "
                           f"(or relative to the CSV)")
    return pairs


def pair_sources(ref: Source, gen: Source, pairs_csv: str | Path | None = None, reference_set: bool = False) -> Pairing:
    if reference_set:
        if pairs_csv is not None:
            raise StyleIDError("{reference_set} compares every generated image with the set; leave out {pairs}",
                               param="pairs", reference_set=Arg("reference_set", flag="--reference-set"), pairs=Arg("pairs"))
        if len(ref) < 2:
            raise StyleIDError("{where}: {reference_set} needs at least 2 photos of the person, found {n}",
                               where=ref.where, reference_set=Arg("reference_set"), n=len(ref))
        return Pairing("reference-set", [(MEAN, j) for j in range(len(gen))])
    if pairs_csv is not None:
        return Pairing("pairs", _from_csv(ref, gen, pairs_csv))
    if len(ref) == 1:
        return Pairing("one", [(0, j) for j in range(len(gen))])
    return Pairing("name", _by_name(ref, gen))
