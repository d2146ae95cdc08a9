"""Human-alignment statistics on hand-made cases with known answers."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss

from styleid_guidance.eval.human import calibration, ece_bins, human_alignment, verdict_agreement


def test_rank_correlations_are_scipys_with_ties():
    rng = np.random.default_rng(0)
    s = rng.uniform(-0.2, 0.9, 60)
    h = np.round(np.clip(s + rng.normal(0, 0.3, 60), 0, 1) * 4) / 4  # five rate levels: many ties
    out = human_alignment(s, h)
    assert out["n"] == 60
    assert out["spearman"] == pytest.approx(stats.spearmanr(s, h).statistic, abs=1e-12)
    assert out["kendall"] == pytest.approx(stats.kendalltau(s, h, variant="b").statistic, abs=1e-12)
    assert out["kendall_p"] == pytest.approx(stats.kendalltau(s, h, variant="b").pvalue, abs=1e-12)
    assert out["spearman"] > 0.5  # they were built to agree
    assert human_alignment(-s, h)["spearman"] == pytest.approx(-out["spearman"])


def test_pairs_without_a_human_rate_are_left_out():
    s = np.array([0.1, 0.5, 0.2, 0.9, 0.4])
    h = np.array([0.0, np.nan, 0.3, 1.0, 0.6])
    out = human_alignment(s, h)
    assert out["n"] == 4
    assert out["spearman"] == pytest.approx(stats.spearmanr(s[[0, 2, 3, 4]], h[[0, 2, 3, 4]]).statistic)
    assert human_alignment(s, np.full(5, np.nan)) == {"n": 0}


def test_verdict_agreement_with_the_majority():
    s = np.array([0.35, 0.45, 0.55, 0.20, 0.60])
    h = np.array([1.0, 0.5, 0.6, 0.3, 0.2])  # majority: same, (tie), same, different, different
    out = verdict_agreement(s, h)
    assert out["n_tied"] == 1
    # verdicts at 0.3: S S S D S → agree on 0, 2, 3 of the four decided pairs
    assert out["agree@0.3"] == pytest.approx(3 / 4)
    # at 0.4: D . S D S → agree on 2, 3
    assert out["agree@0.4"] == pytest.approx(2 / 4)
    # at 0.5: D . S D S → the same
    assert out["agree@0.5"] == pytest.approx(2 / 4)
    assert verdict_agreement(np.array([0.9]), np.array([0.5]))["agree@0.5"] is None


def test_logistic_calibration_recovers_a_known_curve():
    s = np.linspace(-0.2, 0.9, 300)
    h = 1 / (1 + np.exp(-(10 * s - 4)))  # exact rates of a logistic observer
    cal = calibration(s, h)
    assert cal["slope"] == pytest.approx(10, rel=0.02)
    assert cal["intercept"] == pytest.approx(-4, rel=0.02)
    assert cal["p50"] == pytest.approx(0.4, abs=0.005)
    assert cal["ece"] < 0.005
    # one judgement's Brier score of a perfect model is the raters' own disagreement
    assert cal["brier"] == pytest.approx(float(np.mean(h * (1 - h))), abs=1e-4)


def test_calibration_of_binary_verdicts_uses_sklearns_definitions():
    rng = np.random.default_rng(3)
    s = rng.uniform(0, 1, 400)
    h = (rng.uniform(0, 1, 400) < s).astype(float)  # P(same) = similarity
    cal = calibration(s, h)
    from sklearn.linear_model import LogisticRegression

    p = LogisticRegression(C=1e4, max_iter=1000).fit(s[:, None], h).predict_proba(s[:, None])[:, 1]
    assert cal["brier"] == pytest.approx(brier_score_loss(h, p), abs=1e-6)
    rate_b, pred_b, counts = ece_bins(p, h)
    true_cc, pred_cc = calibration_curve(h, p, n_bins=10, strategy="uniform")
    assert np.allclose(rate_b, true_cc) and np.allclose(pred_b, pred_cc) and counts.sum() == 400
    assert cal["ece"] == pytest.approx(float((counts / 400 * np.abs(rate_b - pred_b)).sum()), abs=1e-6)
    assert 0 < cal["slope"] and 0 < cal["p50"] < 1


def test_a_badly_calibrated_model_has_a_large_ece():
    # a flat rate gives a flat, calibrated fit; a step from 0.1 to 0.9 at 0.5 cannot be followed by a
    # logistic curve (it is steep in the middle and far off at the plateaus), and the ECE says so
    s = np.linspace(0, 1, 200)
    flat = calibration(s, np.full(200, 0.3))
    assert abs(flat["slope"]) < 1e-2 and flat["ece"] < 1e-3
    step = calibration(s, np.where(s < 0.5, 0.1, 0.9))
    assert step["p50"] == pytest.approx(0.5, abs=1e-3) and step["ece"] > 0.1


def test_undefined_cases_are_null_not_errors():
    s = np.array([0.2, 0.4, 0.6])
    assert calibration(s, np.ones(3)) is None and calibration(s, np.zeros(3)) is None
    out = human_alignment(np.full(3, 0.5), np.array([0.1, 0.5, 0.9]))
    assert out["spearman"] is None and out["kendall"] is None  # constant similarity
    assert human_alignment(s[:2], np.array([0.1, 0.9]))["spearman"] is None  # too few pairs


def test_rater_counts_weight_the_fit_like_individual_judgements():
    """A pair judged by n people with rate k/n is n binary judgements: the fit, Brier and ECE agree."""
    rng = np.random.default_rng(5)
    s = rng.uniform(-0.1, 0.9, 40)
    n = rng.integers(1, 9, 40)
    k = rng.binomial(n, 1 / (1 + np.exp(-(6 * s - 2))))
    weighted = calibration(s, k / n, n)
    s_rows = np.repeat(s, n)
    y_rows = np.concatenate([np.r_[np.ones(ki), np.zeros(ni - ki)] for ki, ni in zip(k, n)])
    expanded = calibration(s_rows, y_rows)
    for key in ("slope", "intercept", "brier", "ece"):
        assert weighted[key] == pytest.approx(expanded[key], rel=1e-3, abs=1e-5), key
    unweighted = calibration(s, k / n)
    assert unweighted["slope"] != pytest.approx(weighted["slope"], rel=1e-3)
    out = human_alignment(s, k / n, np.where(np.arange(40) == 0, np.nan, n))
    assert out["judgements"] == int(n[1:].sum()) + 1  # an unknown count is one judgement
