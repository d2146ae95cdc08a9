"""Evaluation on StyleBench-H-style pair lists: verification metrics, the paper's Table 1, plots.

`evaluate(...)` is `styleid eval` as a function; `evaluate_encoder(encoder, pairs)` scores an
in-memory encoder (the trainer's periodic check); `read_pairs(csv)` parses and checks a pair list.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

_EXPORTS = {
    "evaluate": "api",
    "evaluate_encoder": "api",
    "EvaluationResult": "api",
    "NonFiniteEmbeddings": "api",
    "read_pairs": "pairs",
    "Pair": "pairs",
    "BASELINES": "models",
    "ModelSpec": "models",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .api import EvaluationResult, NonFiniteEmbeddings, evaluate, evaluate_encoder
    from .models import BASELINES, ModelSpec
    from .pairs import Pair, read_pairs
