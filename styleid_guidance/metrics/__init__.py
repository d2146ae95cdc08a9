"""Metrics: face-verification metrics as the paper reports them (`verification`).

    from styleid_guidance.metrics import auroc, tpr_at_fpr, accuracy_at_threshold, roc_curve, verification_report
    from styleid_guidance.metrics import StyleIDScore, styleid_score  # torchmetrics `Metric` (extra `metrics`)
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

_EXPORTS = {
    "REPORT_FPRS": "verification",
    "REPORT_THRESHOLDS": "verification",
    "auroc": "verification",
    "roc_curve": "verification",
    "tpr_at_fpr": "verification",
    "accuracy_at_threshold": "verification",
    "verification_report": "verification",
    "mean_pairwise_cosine": "verification",
    "StyleIDScore": "score",  # needs the `metrics` extra (torchmetrics); imported only when used
    "styleid_score": "score",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .verification import (REPORT_FPRS, REPORT_THRESHOLDS, accuracy_at_threshold, auroc, mean_pairwise_cosine,
                               roc_curve, tpr_at_fpr, verification_report)
    from .score import StyleIDScore, styleid_score
