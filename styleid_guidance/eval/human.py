"""How well a model's similarities agree with people: rank correlation, verdict agreement, calibration.

`human` is, per pair, the fraction of raters who said "same" (a 0/1 verdict is the one-rater case).

- Rank agreement: Spearman's ρ and Kendall's τ-b (scipy.stats) between similarity and the human rate,
  with their two-sided p-values.
- Verdict agreement at the paper's fixed cosine thresholds (0.3/0.4/0.5): the model says "same" when
  similarity ≥ t; the human majority says "same" when the rate is > 0.5. Pairs with an exact 50/50
  split have no majority and are left out (`n_tied`).
- Calibration: P(a rater says "same" | similarity) by scikit-learn's LogisticRegression on the
  similarity, fitted to every judgement (each pair enters as a "same" row weighted by raters·rate and a
  "different" row weighted by raters·(1 − rate), the binomial likelihood of the rates; raters is the
  `human_n` column, 1 per pair without it). Practically unpenalised
  (C = 1e4) so the slope is not shrunk, yet finite when the classes separate. Reported in-sample:
  slope, intercept, `p50` (the similarity at which a rater is as likely to say "same" as not), the
  Brier score of a single judgement (sklearn's brier_score_loss on the weighted rows; it includes the
  raters' own disagreement, mean rate·(1 − rate)), and the expected calibration error over 10
  equal-width probability bins (sklearn.calibration.calibration_curve's "uniform" bins):
  ECE = Σ_b (n_b / n) · |mean rate_b − mean predicted_b|.
"""
from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from ..metrics.verification import REPORT_THRESHOLDS

ECE_BINS = 10
LOGISTIC_C = 1e4


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def rank_correlations(similarity: np.ndarray, human: np.ndarray) -> dict[str, float | None]:
    from scipy import stats

    if len(similarity) < 3:
        return {"spearman": None, "spearman_p": None, "kendall": None, "kendall_p": None}
    with warnings.catch_warnings():  # constant input: the correlation is undefined (NaN → null), not a warning to the user
        warnings.simplefilter("ignore")
        rho = stats.spearmanr(similarity, human)
        tau = stats.kendalltau(similarity, human, variant="b")
    return {"spearman": _finite(rho.statistic), "spearman_p": _finite(rho.pvalue),
            "kendall": _finite(tau.statistic), "kendall_p": _finite(tau.pvalue)}


def verdict_agreement(similarity: np.ndarray, human: np.ndarray,
                      thresholds: tuple[float, ...] = REPORT_THRESHOLDS) -> dict[str, Any]:
    decided = human != 0.5
    majority = human[decided] > 0.5
    out: dict[str, Any] = {"n_tied": int((~decided).sum())}
    for t in thresholds:
        verdict = similarity[decided] >= t
        out[f"agree@{t}"] = float((verdict == majority).mean()) if decided.any() else None
    return out


def ece_bins(predicted: np.ndarray, rate: np.ndarray, weights: np.ndarray | None = None,
             n_bins: int = ECE_BINS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per non-empty bin: (mean rate, mean prediction, weight), binned as calibration_curve's "uniform"
    (weights: judgements per pair; 1 each by default)."""
    w = np.ones(len(predicted)) if weights is None else np.asarray(weights, np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ids = np.searchsorted(edges[1:-1], predicted)
    counts = np.bincount(ids, weights=w, minlength=n_bins)
    sums_rate = np.bincount(ids, weights=w * rate, minlength=n_bins)
    sums_pred = np.bincount(ids, weights=w * predicted, minlength=n_bins)
    keep = counts > 0
    return sums_rate[keep] / counts[keep], sums_pred[keep] / counts[keep], counts[keep]


def calibration(similarity: np.ndarray, human: np.ndarray, raters: np.ndarray | None = None) -> dict[str, float | None] | None:
    """The logistic fit similarity → P(rater says "same"); None when the raters never or always said "same"."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import brier_score_loss

    if len(similarity) < 2 or human.max() <= 0.0 or human.min() >= 1.0:
        return None
    x = np.concatenate([similarity, similarity])[:, None]
    y = np.concatenate([np.ones(len(human)), np.zeros(len(human))])
    n = np.ones(len(human)) if raters is None else np.asarray(raters, np.float64)
    w = np.concatenate([n * human, n * (1.0 - human)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # separable data: a large finite slope is the honest answer
        model = LogisticRegression(C=LOGISTIC_C, max_iter=1000).fit(x, y, sample_weight=w)
    slope, intercept = float(model.coef_[0, 0]), float(model.intercept_[0])
    predicted = model.predict_proba(similarity[:, None])[:, 1]
    rate_b, pred_b, count_b = ece_bins(predicted, human, n)
    return {
        "slope": slope,
        "intercept": intercept,
        "p50": _finite(-intercept / slope) if slope != 0 else None,
        "brier": float(brier_score_loss(y, np.concatenate([predicted, predicted]), sample_weight=w)),
        "ece": float((count_b / count_b.sum() * np.abs(rate_b - pred_b)).sum()),
    }


def human_alignment(similarity: np.ndarray, human: np.ndarray, raters: np.ndarray | None = None) -> dict[str, Any]:
    """All of the above for the pairs that have a human judgement (`human` NaN = none); `raters`: people
    per pair (NaN = unknown, counted as 1), for the calibration's weights."""
    similarity = np.asarray(similarity, np.float64)
    human = np.asarray(human, np.float64)
    has = np.isfinite(human)
    s, h = similarity[has], human[has]
    n = None
    if raters is not None:
        n = np.asarray(raters, np.float64)[has]
        n = np.where(np.isfinite(n), n, 1.0)
    out: dict[str, Any] = {"n": int(has.sum())}
    if n is not None:
        out["judgements"] = int(n.sum())
    if not has.any():
        return out
    out.update(rank_correlations(s, h))
    out["human_mean"] = float(h.mean())
    out.update(verdict_agreement(s, h))
    out["calibration"] = calibration(s, h, n)
    return out
