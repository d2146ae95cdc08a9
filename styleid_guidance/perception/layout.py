"""What `styleid generate` makes, before any model runs: sources, styles, levels, the work list and seeds.

StyleBench-S layout (StyleID, Yun et al., SIGGRAPH 2026), relative to the output folder OUT:

    p3/{id}.png                          the source photo, re-encoded as RGB PNG (the stylizers read this copy)
    {method}/{style}/{id}_{idx}.png      a stylised image; {idx} is the strength level 1..7
    manifest.jsonl                       one JSON record per image (see manifest.py): the authority

{idx} = level, as `styleid smoke-data` writes it (and a `stylebench.json` with `idx_is_level` says so for
readers that predate the manifest). Everything here is pure and deterministic: the same inputs give the same
work list, in the same order, on every process of a multi-process run.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import StyleIDError
from ..files.images import IMAGE_SUFFIXES
from ..pipelines import STYLIZERS, stylizer_names

LEVELS = tuple(range(1, 8))
SOURCE_DIR = "p3"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # a folder name that is safe on every file system


def paper_styles() -> dict[str, str]:
    """The paper's ten styles, name → prompt (from the pipelines' presets: one source of truth)."""
    from ..pipelines.presets import STYLE_PROMPTS

    return dict(STYLE_PROMPTS)


# ---------------------------------------------------------------------- seeds
def item_seed(seed: int, identity: str, method: str, style: str, level: int) -> int:
    """The generator seed of one image, from (run seed, id, method, style, level) only.

    sha256 of a canonical JSON array, so it is the same on every machine, Python version and process
    (Python's `hash()` is salted per process). 53 bits: exact in any JSON reader, including JavaScript."""
    key = json.dumps([int(seed), str(identity), str(method), str(style), int(level)], separators=(",", ":"))
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") >> 11


def stable_fraction(*parts: object) -> float:
    """A uniform number in [0, 1) from `parts` (for deterministic choices such as pairing)."""
    key = json.dumps([str(p) for p in parts], separators=(",", ":"))
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2**64


# ---------------------------------------------------------------------- methods and styles
def all_methods() -> tuple[str, ...]:
    """The methods `generate` can run: every image stylizer in the registry (`pipelines.STYLIZERS`), in order."""
    return stylizer_names("image")


def paper_methods() -> tuple[str, ...]:
    """The paper's StyleBench-S generators: what every command runs when no methods are given."""
    return tuple(name for name in all_methods() if STYLIZERS[name].paper)


def parse_methods(text: str | Sequence[str]) -> list[str]:
    """"ip_adapter,instantid" → ["ip_adapter", "instantid"] (order kept, duplicates dropped)."""
    names = text.replace(",", " ").split() if isinstance(text, str) else list(text)
    known = all_methods()
    if not names:
        raise StyleIDError(f"no methods given; choose from {', '.join(known)}")
    video = [n for n in names if n in STYLIZERS and n not in known]
    if video:
        raise StyleIDError(f"{', '.join(video)} make(s) videos; generate writes images, choose from {', '.join(known)}")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise StyleIDError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    return list(dict.fromkeys(names))


def parse_styles(items: Sequence[str] | None) -> dict[str, str]:
    """Style names of the paper (`pixar`) and/or custom `name=prompt` items → name → prompt.

    None → the paper's ten. A comma separates names (`pixar,orc`); a custom prompt may contain commas, so
    `name=prompt` items are passed one per argument."""
    paper = paper_styles()
    if not items:
        return paper
    styles: dict[str, str] = {}
    for item in items:
        parts = [item] if "=" in item else [p for p in item.split(",") if p.strip()]
        for part in parts:
            name, eq, prompt = part.partition("=")
            name, prompt = name.strip(), prompt.strip()
            if not eq:
                if name not in paper:
                    raise StyleIDError(f"style {name!r} is not one of the paper's ({', '.join(paper)}); "
                                       f"give a custom one as {name}=PROMPT")
                prompt = paper[name]
            if not _NAME.match(name):
                raise StyleIDError(f"style name {name!r} must be letters, digits, '.', '_' or '-' (it names a folder)")
            if not prompt:
                raise StyleIDError(f"style {name!r}: empty prompt; write {name}=PROMPT")
            if name in styles and styles[name] != prompt:
                raise StyleIDError(f"style {name!r} given twice with different prompts")
            styles[name] = prompt
    if not styles:
        raise StyleIDError("no styles given")
    return styles


# ---------------------------------------------------------------------- calibration (psychometric.json)
def read_calibration(path: str | os.PathLike) -> dict[tuple[str, str], list[int]]:
    """`styleid psychometric`'s psychometric.json → {(method, style): levels_kept}.

    Format: {"target": 0.9, "cells": [{"method", "style", "threshold", "threshold_ci", "levels_kept",
    "observed", "n"}]}. Only method, style and levels_kept are used; the rest is checked for type so a
    file from something else is refused rather than half-read."""
    path = Path(path)
    if not path.is_file():
        raise StyleIDError(f"{path}: no such file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise StyleIDError(f"{path}: not a readable JSON file ({type(err).__name__}); write it with styleid psychometric") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise StyleIDError(f"{path}: expected {{\"target\": ..., \"cells\": [...]}} as styleid psychometric writes it")
    target = data.get("target")
    if not _is_number(target) or not 0.5 <= float(target) <= 1.0:
        raise StyleIDError(f"{path}: target must be a number in [0.5, 1], got {target!r}")
    cells: dict[tuple[str, str], list[int]] = {}
    for i, cell in enumerate(data["cells"]):
        where = f"{path}: cells[{i}]"
        if not isinstance(cell, dict):
            raise StyleIDError(f"{where}: expected an object, got {type(cell).__name__}")
        missing = [k for k in ("method", "style", "levels_kept") if k not in cell]
        if missing:
            raise StyleIDError(f"{where}: missing {', '.join(missing)}")
        method, style, kept = cell["method"], cell["style"], cell["levels_kept"]
        if method not in all_methods():
            raise StyleIDError(f"{where}: unknown method {method!r} (one of {', '.join(all_methods())})")
        if not isinstance(style, str) or not _NAME.match(style):
            raise StyleIDError(f"{where}: style must be a folder-safe name, got {style!r}")
        if not isinstance(kept, list) or any(isinstance(v, bool) or not isinstance(v, int) or v not in LEVELS for v in kept):
            raise StyleIDError(f"{where}: levels_kept must be a list of integer levels 1..7, got {kept!r}")
        for key in ("threshold", "n"):
            if cell.get(key) is not None and not _is_number(cell[key]):
                raise StyleIDError(f"{where}: {key} must be a number or null, got {cell[key]!r}")
        ci = cell.get("threshold_ci")
        if ci is not None and not (isinstance(ci, list) and len(ci) == 2 and all(v is None or _is_number(v) for v in ci)):
            raise StyleIDError(f"{where}: threshold_ci must be [lo, hi], got {ci!r}")
        if cell.get("observed") is not None and not isinstance(cell["observed"], dict):
            raise StyleIDError(f"{where}: observed must be an object {{level: rate}}")
        if (method, style) in cells:
            raise StyleIDError(f"{where}: a second cell for {method}/{style}")
        cells[(method, style)] = sorted(set(kept))
    if not cells:
        raise StyleIDError(f"{path}: no cells")
    return cells


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def plan_cells(methods: Sequence[str], styles: dict[str, str], levels: Sequence[int] | None = None,
               calibration: dict[tuple[str, str], list[int]] | None = None,
               methods_given: bool = True, styles_given: bool = True) -> list[tuple[str, str, int]]:
    """The (method, style, level) cells to generate, sorted.

    With a calibration, its cells are the plan; --methods / --styles, when given, restrict it, and a pair
    they name that the calibration lacks is an error (generating it would skip the human check)."""
    if calibration is None:
        return sorted((m, s, lv) for m in methods for s in styles for lv in sorted(set(levels or LEVELS)))
    pairs = [(m, s) for (m, s) in calibration if (not methods_given or m in methods) and (not styles_given or s in styles)]
    if methods_given and styles_given:
        absent = [f"{m}/{s}" for m in methods for s in styles if (m, s) not in calibration]
        if absent:
            raise StyleIDError(f"the calibration has no cell for {', '.join(absent[:4])}{' ...' if len(absent) > 4 else ''}; "
                               "run the study for it or leave it out of the methods/styles")
    no_prompt = sorted({s for _, s in pairs if s not in styles})
    if no_prompt:
        raise StyleIDError(f"calibrated style(s) {', '.join(no_prompt)} have no prompt; give them as NAME=PROMPT styles")
    return sorted((m, s, lv) for (m, s) in pairs for lv in calibration[(m, s)])


# ---------------------------------------------------------------------- sources
@dataclass(frozen=True)
class Source:
    id: str
    path: Path  # the original photo


def find_sources(items: Iterable[str | os.PathLike]) -> list[Source]:
    """Face photos from files and folders (a folder: its image files, not recursive), sorted by id.

    The id is the file name without its suffix; two photos with one id are an error (they would write the
    same p3/{id}.png)."""
    found: dict[str, Source] = {}
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                           and not p.name.startswith("."))
            if not files:
                raise StyleIDError(f"{path}: no image files in this folder ({', '.join(sorted(IMAGE_SUFFIXES))})")
        elif path.is_file():
            files = [path]
        else:
            raise StyleIDError(f"{path}: no such file or folder")
        for file in files:
            ident = file.stem
            if not ident or ident.startswith("."):
                raise StyleIDError(f"{file}: the file name gives no usable id")
            if ident in found and found[ident].path.resolve() != file.resolve():
                raise StyleIDError(f"{file}: id {ident!r} is also {found[ident].path}; rename one (ids are file names)")
            found[ident] = Source(ident, file)
    if not found:
        raise StyleIDError("no source photos given")
    return [found[k] for k in sorted(found)]


def source_relpath(identity: str) -> str:
    return f"{SOURCE_DIR}/{identity}.png"


def image_relpath(identity: str, method: str, style: str, level: int) -> str:
    return f"{method}/{style}/{identity}_{level}.png"


@dataclass(frozen=True, order=True)
class Item:
    """One stylised image to make. Sorted by (method, id, style, level): a contiguous chunk of the list (what
    each process of a split run gets) needs few pipelines, and one source photo's images are made in a row,
    so its face is read and detected once."""

    method: str
    id: str
    style: str
    level: int

    @property
    def relpath(self) -> str:
        return image_relpath(self.id, self.method, self.style, self.level)


def work_list(cells: Sequence[tuple[str, str, int]], ids: Iterable[str]) -> list[Item]:
    ids = sorted(set(ids))
    return sorted(Item(m, i, s, lv) for (m, s, lv) in cells for i in ids)
