"""Evaluation on StyleBench-H-style pair lists: verification metrics, the paper's Table 1, human
alignment, per-pair scores, plots.

`evaluate(...)` is `styleid eval` as a function; `evaluate_encoder(encoder, pairs)` scores an
in-memory encoder (the trainer's periodic check); `read_pairs(csv)` parses and checks a pair list;
`human_alignment(similarity, human_rate)` gives the correlation / agreement / calibration statistics.
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
    "ModelUnavailable": "models",
    "human_alignment": "human",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .api import EvaluationResult, NonFiniteEmbeddings, evaluate, evaluate_encoder
    from .human import human_alignment
    from .models import BASELINES, ModelSpec, ModelUnavailable
    from .pairs import Pair, read_pairs
