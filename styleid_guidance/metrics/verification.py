"""Face-verification metrics as reported in the paper: TPR at fixed FPR, accuracy at fixed cosine
thresholds (not tuned per model), and AUROC. A pair counts as "same" when score ≥ threshold."""
from __future__ import annotations

from typing import Sequence

import numpy as np

REPORT_FPRS = (1e-2, 1e-3, 1e-4)
REPORT_THRESHOLDS = (0.3, 0.4, 0.5)


def _check(scores: Sequence[float], labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel()
    if s.shape != y.shape:
        raise ValueError(f"scores ({s.size}) and labels ({y.size}) differ in length")
    if s.size == 0:
        raise ValueError("no scores given")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or inf")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (different) or 1 (same)")
    return s, y.astype(bool)


def _need_both(y: np.ndarray, what: str) -> None:
    if y.all() or not y.any():
        raise ValueError(f"{what} needs both same-identity (1) and different-identity (0) pairs")


def auroc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the ROC curve = P(score_pos > score_neg) + ½ P(tie) (Mann–Whitney), by scikit-learn."""
    from sklearn.metrics import roc_auc_score

    s, y = _check(scores, labels)
    _need_both(y, "AUROC")
    return float(roc_auc_score(y, s))


def roc_curve(scores: Sequence[float], labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) for every distinct threshold, starting at (0, 0) with threshold +inf (scikit-learn's,
    every point kept: TPR at a fixed FPR must see each threshold)."""
    from sklearn.metrics import roc_curve as sk_roc_curve

    s, y = _check(scores, labels)
    _need_both(y, "an ROC curve")
    fpr, tpr, thresholds = sk_roc_curve(y, s, drop_intermediate=False)
    return fpr, tpr, thresholds


def tpr_at_fpr(scores: Sequence[float], labels: Sequence[int], fpr: float) -> float:
    """The highest TPR over thresholds whose FPR ≤ `fpr`."""
    f, t, _ = roc_curve(scores, labels)
    return float(t[f <= fpr + 1e-12].max())


def accuracy_at_threshold(scores: Sequence[float], labels: Sequence[int], threshold: float) -> float:
    s, y = _check(scores, labels)
    return float(((s >= threshold) == y).mean())


def verification_report(scores: Sequence[float], labels: Sequence[int]) -> dict[str, float]:
    """The paper's columns: TPR@1e-2/1e-3/1e-4, Acc@0.3/0.4/0.5, AUROC, and n."""
    s, y = _check(scores, labels)
    report: dict[str, float] = {"n": int(s.size)}
    both = bool(y.any() and not y.all())
    for f in REPORT_FPRS:
        report[f"tpr@{f:.0e}".replace("e-0", "e-")] = tpr_at_fpr(s, y, f) if both else float("nan")
    for t in REPORT_THRESHOLDS:
        report[f"acc@{t}"] = accuracy_at_threshold(s, y, t)
    report["auroc"] = auroc(s, y) if both else float("nan")
    return report


def mean_pairwise_cosine(z: "torch.Tensor") -> "torch.Tensor":
    """Mean cosine over all pairs i ≠ j of the rows of z (L2-normalised first): the spread of a set of
    embeddings, 1.0 when they have collapsed to one direction. Needs at least 2 rows."""
    import torch

    n = z.shape[0]
    if n < 2:
        raise ValueError("the spread of a set of embeddings needs at least 2 of them")
    total = torch.nn.functional.normalize(z.detach().float(), dim=-1).sum(0)
    return (total @ total - n) / (n * (n - 1))

