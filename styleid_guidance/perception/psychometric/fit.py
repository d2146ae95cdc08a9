"""One psychometric fit per (method, style): recognition rate in a 2AFC task as a function of the level.

psignifit (Schütt, Harmeling, Macke & Wichmann 2016), the field's standard Bayesian fitter, does the
work: a logistic with the 2AFC guess rate fixed at 0.5 and a free lapse rate. Recognition *falls* as
the level rises, so the fit runs on the negated level and is mapped back: psignifit's decreasing
(`neg_*`) sigmoids put 2AFC's asymptotes the wrong way round (0.5 down to the lapse), so they are not
used.

The threshold is psignifit's MAP estimate of the level where the full fitted curve (guess and lapse
included) equals the target, and the plotted curve and the kept levels follow that same MAP curve (a
level is kept when its fitted rate reaches the target, i.e. it is at or below the threshold).
threshold_ci is a posterior credible interval over psignifit's parameter grid (the target level is
computed at every grid point), which is exact, unlike `Result.threshold()`'s worst-case bound. The lapse
prior is psignifit's Beta(1, 10) cut to zero above the bound: psignifit bounds only its grid, and its
MAP search (Nelder-Mead) would otherwise wander to lapse rates above the bound.
Thresholds outside the tested levels are extrapolations and are reported as censored, not as numbers.
"""
from __future__ import annotations

import time
import warnings
from functools import partial
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ...errors import Arg, StyleIDError
from .trials import LEVELS, CellCounts

GUESS = 0.5  # 2AFC: chance
INSTALL_HINT = ('psignifit is not installed: pip install "styleid-guidance[psychometric]" '
                "(psignifit is GPL-3.0-or-later, so it is an optional extra)")


@dataclass(frozen=True)
class FitOptions:
    target: float = 0.9           # recognition rate that defines the threshold (the paper keeps cells ≥ 90 %)
    max_lapse: float = 0.05       # lapse rate is free on [0, max_lapse]: Wichmann & Hill (2001) bound it to ~0.06
    overdispersion: bool = False  # beta-binomial eta (participants differ): honest for pooled data, ~4x slower
    ci: float = 0.95              # credible mass of threshold_ci
    min_levels: int = 3           # fewer distinct levels cannot pin down threshold, width and lapse

    def check(self) -> None:
        # one check for Python callers and the command line (the `Arg` is worded as a field or as its flag)
        if not GUESS < self.target < 1:
            raise StyleIDError("{name} must be between 0.5 (chance in 2AFC) and 1, got {value:g}", param="target",
                               name=Arg("target"), value=self.target)
        if not 0 <= self.max_lapse < 0.5:
            raise StyleIDError("{name} must be from 0 to below 0.5, got {value:g}", param="max_lapse",
                               name=Arg("max_lapse"), value=self.max_lapse)
        if not 0 < self.ci < 1:
            raise StyleIDError("{name} must be between 0 and 1, got {value:g}", param="ci", name=Arg("ci"), value=self.ci)


@dataclass
class CellFit:
    method: str
    style: str
    counts: dict[int, tuple[int, int]]
    target: float
    threshold: float | None = None            # None when censored
    threshold_ci: tuple[float, float] | None = None
    censored: str | None = None               # above_range / below_range / not_reached / too_few_levels
    reason: str | None = None
    extrapolated: float | None = None         # the fitted curve's target level when it lies outside the tested levels
    levels_kept: list[int] = field(default_factory=list)
    fitted: dict[int, float] = field(default_factory=dict)  # fitted rate at every level 1..7
    lapse: float | None = None
    width: float | None = None
    unreachable_mass: float | None = None     # posterior mass whose curve never reaches the target
    curve: tuple[np.ndarray, np.ndarray] | None = None      # dense (level, rate) for plots
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return sum(n for _, n in self.counts.values())

    @property
    def observed(self) -> dict[int, float]:
        return {lvl: k / n for lvl, (k, n) in sorted(self.counts.items())}

    def to_json(self, plot: str | None = None) -> dict[str, Any]:
        def r(x: float | None) -> float | None:
            return None if x is None else round(float(x), 4)

        return {
            "method": self.method, "style": self.style,
            "threshold": r(self.threshold),
            "threshold_ci": None if self.threshold_ci is None else [r(v) for v in self.threshold_ci],
            "levels_kept": list(self.levels_kept),
            "observed": {str(lvl): r(rate) for lvl, rate in self.observed.items()},
            "n": self.n,
            "censored": self.censored, "reason": self.reason, "extrapolated": r(self.extrapolated),
            "n_per_level": {str(lvl): n for lvl, (_, n) in sorted(self.counts.items())},
            "fitted": {str(lvl): r(rate) for lvl, rate in sorted(self.fitted.items())},
            "lapse": r(self.lapse), "width": r(self.width), "unreachable_mass": r(self.unreachable_mass),
            "plot": plot, "warnings": list(self.warnings),
        }


def _lapse_prior(x: np.ndarray, upper: float) -> np.ndarray:
    """psignifit's default lapse prior, Beta(1, 10), and zero above `upper`."""
    from scipy.stats import beta

    x = np.asarray(x, float)
    return np.where((x >= 0) & (x <= upper), beta.pdf(x, 1, 10), 0.0)


def _psignifit() -> Any:
    try:
        import psignifit
    except ImportError:
        raise StyleIDError(INSTALL_HINT) from None
    return psignifit


@dataclass
class _Posterior:
    """psignifit's posterior grid (needs debug=True), flattened: one weight and parameter set per point."""

    weight: np.ndarray
    threshold: np.ndarray
    width: np.ndarray
    gamma: np.ndarray
    lapse: np.ndarray
    sigmoid: Any

    @classmethod
    def of(cls, res: Any) -> "_Posterior":
        names = sorted(res.parameter_values)  # psignifit orders the posterior axes alphabetically
        grid = np.meshgrid(*[np.asarray(res.parameter_values[n], float) for n in names], indexing="ij")
        flat = {n: g.ravel() for n, g in zip(names, grid)}
        w = np.asarray(res.debug["posteriors"], float).ravel()
        return cls(w / w.sum(), flat["threshold"], flat["width"], flat["gamma"], flat["lambda"],
                   res.configuration.make_sigmoid())

    def target_level(self, target: float) -> np.ndarray:
        """Per grid point, the level where its curve equals `target`; -inf where it never gets there."""
        reach = (1 - self.lapse) > target
        f = (target - self.gamma) / np.where(reach, 1 - self.lapse - self.gamma, 1.0)
        x = self.sigmoid.inverse(np.clip(f, 1e-9, 1 - 1e-9), self.threshold, self.width)
        return np.where(reach, -np.asarray(x, float), -np.inf)  # back from the flipped axis

    def quantiles(self, values: np.ndarray, qs: Sequence[float]) -> list[float]:
        """Posterior quantiles (lower inverse CDF) of a per-point value."""
        order = np.argsort(values)
        cum = np.cumsum(self.weight[order])
        return [float(values[order][min(int(np.searchsorted(cum, q)), len(values) - 1)]) for q in qs]


def fit_cell(counts: CellCounts, options: FitOptions = FitOptions()) -> CellFit:
    """Fit one cell; never raises for data that is merely uninformative (that is reported as censored)."""
    options.check()
    cell = CellFit(counts.method, counts.style, dict(counts.counts), options.target)
    levels = sorted(counts.counts)
    if len(levels) < options.min_levels:
        cell.censored, cell.reason = "too_few_levels", (
            f"trials at {len(levels)} level(s) {levels}; a fit needs at least {options.min_levels} distinct levels")
        return cell
    ps = _psignifit()
    data = np.array([[-lvl, *counts.counts[lvl]] for lvl in levels], dtype=float)  # flipped axis: rising curve
    kwargs: dict[str, Any] = {
        "sigmoid": "logistic", "experiment_type": "2AFC", "debug": True, "verbose": False,
        "bounds": {"lambda": (0.0, options.max_lapse)},
        "priors": {"lambda": partial(_lapse_prior, upper=options.max_lapse)},
        "grid_steps": {"lambda": 10},  # the lapse range is narrow: 10 steps resolve it, and the fit is twice as fast
        "stimulus_range": (-float(max(LEVELS)), -float(min(LEVELS))),  # one prior for every cell: the whole 1..7 scale
    }
    if not options.overdispersion:
        kwargs["fixed_parameters"] = {"eta": 0.0}  # pure binomial; 4x faster
    if options.max_lapse == 0:
        kwargs.pop("bounds"), kwargs.pop("priors")
        kwargs.setdefault("fixed_parameters", {})["lambda"] = 0.0
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = ps.psignifit(data, **kwargs)
    cell.warnings = sorted({str(w.message).strip().splitlines()[0] for w in caught if str(w.message).strip()})
    est = res.parameter_estimate
    cell.lapse, cell.width = float(est["lambda"]), float(est["width"])
    post = _Posterior.of(res)
    at_target = post.target_level(options.target)
    cell.unreachable_mass = float(post.weight[np.isinf(at_target)].sum())
    tail = (1 - options.ci) / 2
    lo, hi = post.quantiles(at_target, [tail, 1 - tail])
    xs = np.linspace(0.5, max(LEVELS) + 0.5, 141)
    cell.curve = (xs, np.asarray(res.proportion_correct(-xs), float))
    rates = np.asarray(res.proportion_correct(-np.asarray(LEVELS, float)), float)
    cell.fitted = {lvl: float(v) for lvl, v in zip(LEVELS, rates)}
    cell.seconds = time.perf_counter() - start

    if 1 - cell.lapse <= options.target:  # only with a lapse bound above 1 - target
        cell.censored, cell.reason = "not_reached", (
            f"the fitted curve never reaches {options.target:g} (lapse rate {cell.lapse:.3f}); no level is kept")
        return cell
    level = -float(res.threshold(options.target, return_ci=False))
    lo_tested, hi_tested = levels[0], levels[-1]
    # a level is kept when its fitted rate reaches the target (at or below the threshold: the curve falls);
    # never a level above the highest one tested (that would trust an extrapolation)
    cell.levels_kept = [lvl for lvl in LEVELS if lvl <= min(hi_tested, level)]
    if level > hi_tested:
        cell.censored, cell.extrapolated = "above_range", level
        cell.reason = (f"recognition stays ≥ {options.target:g} at every tested level; the threshold lies above level "
                       f"{hi_tested} (extrapolated {level:.2f}), so it is not reported")
    elif level < lo_tested:
        cell.censored, cell.extrapolated = "below_range", level
        cell.reason = (f"recognition is below {options.target:g} at every tested level; the threshold lies below level "
                       f"{lo_tested} (extrapolated {level:.2f}), so it is not reported")
    else:
        cell.threshold = level
        cell.threshold_ci = (lo if np.isfinite(lo) else None, hi)  # lo is None when the curve may never reach the target
    return cell
