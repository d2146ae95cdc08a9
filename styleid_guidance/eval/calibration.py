"""The human calibration a model folder may carry: `styleid eval --save-calibration` fits P(a person says "same" |
cosine similarity) on a pairs CSV with a `human` column and writes it as `calibration.json` beside the weights.
`styleid verify` reports it as a confidence, the ComfyUI nodes as a likeness percentage. It is not weights: the
model's cache key leaves it out (eval.models.ModelSpec.key)."""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import Arg, StyleIDError

CALIBRATION_FILE = "calibration.json"


@dataclass
class Calibration:
    """similarity → P(a rater says "same"): 1 / (1 + exp(-(slope · similarity + intercept)))."""

    slope: float
    intercept: float
    source: str = ""  # the pairs CSV it was fitted on

    def probability(self, similarity: float) -> float:
        z = self.slope * similarity + self.intercept
        return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))  # no overflow either side


def read_calibration(model: str | os.PathLike) -> Calibration | None:
    """The calibration in a model folder, or None (a Hub id, test-tiny, or a folder without one)."""
    path = Path(model) / CALIBRATION_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        cal = Calibration(float(data["slope"]), float(data["intercept"]), str(data.get("pairs", "")))
    except (OSError, ValueError, KeyError, TypeError):
        raise StyleIDError(f"{path}: not a calibration written by styleid eval --save-calibration; delete it or evaluate again") from None
    if not (math.isfinite(cal.slope) and math.isfinite(cal.intercept)):
        raise StyleIDError(f"{path}: non-finite slope or intercept; evaluate again")
    return cal


def write_calibration(model_dir: str | os.PathLike, fit: dict[str, Any], pairs: str, model_name: str) -> Path:
    """Write eval's logistic fit into the model folder, so `verify` can report a confidence."""
    from ..files.atomic import atomic_write

    folder = Path(model_dir)
    if not folder.is_dir():
        raise StyleIDError("{model}: the calibration goes into a local model folder; download the model and evaluate "
                           "that folder", param="model_dir", model=Arg("model_dir", model_dir, flag="--model"))
    record = {"slope": fit["slope"], "intercept": fit["intercept"], "p50": fit.get("p50"), "brier": fit.get("brier"),
              "ece": fit.get("ece"), "pairs": str(pairs), "model": model_name,
              "meaning": "P(a person says same | cosine similarity) = 1 / (1 + exp(-(slope * similarity + intercept)))"}
    path = folder / CALIBRATION_FILE
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return path


def check_calibration_target(model: Any, pairs: Any, where: Any) -> None:
    """Before `eval --save-calibration` runs: a local model folder, and a pairs CSV with human judgements."""
    if model is None or str(model).lower() == "none" or not Path(str(model)).is_dir():
        raise StyleIDError(f"--save-calibration writes into the --model folder; {model!r} is not a local folder "
                           f"(download it, or save the encoder with save_pretrained)")
    if not any(p.human is not None for p in pairs):
        raise StyleIDError(f"--save-calibration: {where} has no `human` column (the fraction of people who said 'same'); "
                           f"a calibration is fitted to people's judgements")
