"""`fit_trials(TRIALS.csv, DIR)`: psychometric fits of every (method, style) cell, written as one set.

DIR/psychometric.json:
    {"target": 0.9,
     "cells": [{"method", "style", "threshold", "threshold_ci": [lo, hi], "levels_kept": [...],
                "observed": {"1": rate, ...}, "n", "censored", "reason", ...}, ...],
     "model": {...how the curves were fitted...}, "overview": "psychometric.png"}
plus one PNG per cell and psychometric.png with every cell. The folder is written whole (atomic_dir):
a reader sees the old set or the new one, never a JSON beside half of its plots.

`threshold` is null for a censored cell (`censored` and `reason` say why): every tested level above the
target (threshold beyond the top level; all levels kept), every level below it, or a curve that never
reaches it. `generate --calibration psychometric.json` reads `levels_kept`.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from ...errors import StyleIDError
from ...files.atomic import atomic_dir, check_writable_dir
from .fit import GUESS, CellFit, FitOptions, fit_cell
from .plot import save_cell_plot, save_overview
from .trials import cell_counts, read_trials

RESULT = "psychometric.json"
OVERVIEW = "psychometric.png"


def check_output_dir(out: str | os.PathLike) -> Path:
    """Refuse an output folder whose files would be lost, before any fitting: the set replaces DIR whole."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise StyleIDError(f"{out}: exists and is not a folder; choose a folder for the results")
    if out.is_dir() and any(out.iterdir()) and not (out / RESULT).is_file():
        raise StyleIDError(f"{out}: folder is not empty and holds no {RESULT}; its files would be replaced, "
                           "so choose a new or empty folder")
    check_writable_dir(out.resolve().parent)  # OUT itself is swapped in whole later
    return out


def plot_names(cells: Sequence[CellFit]) -> list[str]:
    """A safe, unique PNG name per cell (method and style come from a user's file)."""
    names, seen = [], set()
    for cell in cells:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{cell.method}__{cell.style}").strip(".-") or "cell"
        name, i = f"{stem}.png", 2
        while name.lower() in seen or name == OVERVIEW:
            name, i = f"{stem}-{i}.png", i + 1
        seen.add(name.lower())
        names.append(name)
    return names


def model_description(options: FitOptions) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    try:
        library = f"psignifit {version('psignifit')}"
    except PackageNotFoundError:  # imported from a source tree
        library = "psignifit"
    return {
        "library": library,
        "sigmoid": "logistic on the negated level (recognition falls as the level rises)",
        "guess_rate": GUESS, "lapse_rate": f"free on [0, {options.max_lapse:g}]",
        "overdispersion": "beta-binomial eta, free" if options.overdispersion else "none (binomial; eta fixed at 0)",
        "threshold": "MAP estimate of the level where the fitted rate equals the target",
        "threshold_ci": f"{options.ci:g} posterior credible interval over psignifit's grid",
        "levels_kept": "levels 1..7 (none above the highest tested) whose fitted rate is at least the target",
        "options": asdict(options),
    }


def fit_all(trials_path: str | os.PathLike, options: FitOptions = FitOptions(), progress: bool = True) -> list[CellFit]:
    options.check()
    cells = cell_counts(read_trials(trials_path))
    from tqdm.auto import tqdm

    return [fit_cell(c, options) for c in tqdm(cells, desc="fitting", unit="cell", disable=not progress)]


def write_results(cells: Sequence[CellFit], out: str | os.PathLike, options: FitOptions, source: str | None = None) -> Path:
    out = check_output_dir(out)
    names = plot_names(cells)
    with atomic_dir(out) as tmp:
        for cell, name in zip(cells, names):
            save_cell_plot(cell, tmp / name)
        save_overview(cells, tmp / OVERVIEW)
        doc = {"target": options.target, "cells": [c.to_json(plot=n) for c, n in zip(cells, names)],
               "trials": source, "overview": OVERVIEW, "model": model_description(options)}
        (tmp / RESULT).write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return out / RESULT


def fit_trials(trials_path: str | os.PathLike, out: str | os.PathLike, options: FitOptions = FitOptions(),
               progress: bool = True) -> tuple[Path, list[CellFit]]:
    """Read, fit, write; the output folder is checked before the (slow) fits."""
    options.check()
    check_output_dir(out)
    cells = fit_all(trials_path, options, progress=progress)
    return write_results(cells, out, options, source=Path(trials_path).name), cells


def summary_lines(cells: Sequence[CellFit]) -> list[str]:
    lines = []
    for c in cells:
        if c.threshold is not None and c.threshold_ci is not None:
            what = f"threshold {c.threshold:.2f} [{c.threshold_ci[0]:.2f}, {c.threshold_ci[1]:.2f}]"
        else:
            what = f"censored ({c.censored})"
        lines.append(f"{c.method}/{c.style}: {what}, keep levels {c.levels_kept or 'none'} (n={c.n})")
    return lines
