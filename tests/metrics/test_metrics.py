"""Verification metrics on cases whose answers are known."""
from __future__ import annotations

import numpy as np
import pytest

from styleid_guidance.metrics.verification import (accuracy_at_threshold, auroc, roc_curve, tpr_at_fpr,
                                                   verification_report)


def test_auroc_known_cases():
    assert auroc([0.9, 0.8, 0.3, 0.1], [1, 1, 0, 0]) == 1.0
    assert auroc([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]) == 0.0
    assert auroc([0.5, 0.5, 0.5, 0.5], [1, 0, 1, 0]) == 0.5
    # one inversion of 2x2 pairs → 3/4
    assert auroc([0.9, 0.4, 0.5, 0.1], [1, 1, 0, 0]) == pytest.approx(0.75)


def test_auroc_equals_pairwise_probability_on_random_data():
    rng = np.random.default_rng(0)
    s = np.round(rng.normal(size=300), 1)  # many ties
    y = rng.integers(0, 2, 300)
    pos, neg = s[y == 1], s[y == 0]
    pairwise = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg))
    assert auroc(s, y) == pytest.approx(pairwise, abs=1e-12)


def test_tpr_at_fpr_picks_best_threshold_within_budget():
    # negatives: 0.95, then 99 low ones. positives spread.
    neg = [0.95] + [0.1] * 99
    pos = [0.99, 0.9, 0.8, 0.2]
    scores, labels = pos + neg, [1] * 4 + [0] * 100
    assert tpr_at_fpr(scores, labels, 1e-2) == pytest.approx(1.0)  # t=0.2 → FPR 1/100 ≤ 1e-2
    assert tpr_at_fpr(scores, labels, 1e-3) == pytest.approx(0.25)  # must stay above 0.95
    fpr, tpr, thr = roc_curve(scores, labels)
    assert fpr[0] == 0 and tpr[0] == 0 and fpr[-1] == 1 and tpr[-1] == 1
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)


def test_accuracy_counts_ties_as_same():
    assert accuracy_at_threshold([0.4, 0.39, 0.6, 0.1], [1, 0, 1, 1], 0.4) == 0.75


def test_report_has_paper_columns():
    rep = verification_report([0.9, 0.8, 0.35, 0.1], [1, 1, 0, 0])
    assert set(rep) == {"auroc", "tpr@1e-2", "tpr@1e-3", "tpr@1e-4", "acc@0.3", "acc@0.4", "acc@0.5", "n"}
    assert rep["n"] == 4 and rep["auroc"] == 1.0 and rep["acc@0.3"] == 0.75 and rep["acc@0.4"] == 1.0


def test_bad_metric_inputs():
    with pytest.raises(ValueError, match="NaN"):
        auroc([0.1, float("nan")], [0, 1])
    with pytest.raises(ValueError, match="both"):
        auroc([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="length"):
        auroc([0.1, 0.2], [1])
    with pytest.raises(ValueError, match="labels"):
        auroc([0.1, 0.2], [1, 2])


def test_roc_curve_has_every_distinct_threshold_and_counts_ties_as_same():
    rng = np.random.default_rng(1)
    s = np.round(rng.normal(size=200), 1)
    y = rng.integers(0, 2, 200)
    fpr, tpr, thresholds = roc_curve(s, y)
    assert thresholds[0] == np.inf and fpr[0] == tpr[0] == 0.0 and fpr[-1] == tpr[-1] == 1.0
    assert np.array_equal(thresholds[1:], np.unique(s)[::-1])  # none dropped: TPR at a fixed FPR sees them all
    for t, f, p in zip(thresholds[1:], fpr[1:], tpr[1:]):  # a pair is "same" when score ≥ threshold
        assert f == ((s >= t) & (y == 0)).sum() / (y == 0).sum() and p == ((s >= t) & (y == 1)).sum() / (y == 1).sum()
