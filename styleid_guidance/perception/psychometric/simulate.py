"""Simulated 2AFC observers with known psychometric curves: check `styleid psychometric` (does it
recover the thresholds?) and plan a study (how many participants and trials per level?).

    python -m styleid_guidance.perception.psychometric.simulate sim_trials.csv [--participants 24] [--seed 0]
    styleid psychometric sim_trials.csv --output sim_fit

Each cell's true curve is p(level) = 0.5 + (0.5 - lapse) * (1 - logistic((level - m) / spread)),
with m set so that p(threshold) = target exactly; the true thresholds are printed and saved beside
the CSV as NAME.truth.json.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ...files.atomic import atomic_write
from .trials import COLUMNS, LEVELS


@dataclass(frozen=True)
class Observer:
    """The true recognition curve of one (method, style) cell."""

    method: str
    style: str
    threshold: float        # level where the true rate equals `target`
    spread: float = 0.6     # logistic scale, in levels
    lapse: float = 0.02
    target: float = 0.9

    def rate(self, level: np.ndarray | float) -> np.ndarray:
        f = 1 - (self.target - 0.5) / (0.5 - self.lapse)  # logistic value at the threshold
        mid = self.threshold - self.spread * math.log(f / (1 - f))
        return 0.5 + (0.5 - self.lapse) * (1 - 1 / (1 + np.exp(-(np.asarray(level, float) - mid) / self.spread)))


# a mix like the paper's: strong identity methods keep more levels than weak ones, one cell never drops
DEMO_OBSERVERS = (
    Observer("ip_adapter", "pixar", threshold=3.2),
    Observer("ip_adapter", "line", threshold=2.4, spread=0.5),
    Observer("instantid", "pixar", threshold=4.6, spread=0.8),
    Observer("instantid", "orc", threshold=3.8, lapse=0.04),
    Observer("infiniteyou", "pixar", threshold=5.5, spread=0.7),
    Observer("infiniteyou", "anime", threshold=9.0, spread=0.6, lapse=0.0),  # recognised at every level: censored above
)


def simulate_trials(observers: Sequence[Observer], participants: int = 24, trials_per_level: int = 2,
                    levels: Sequence[int] = LEVELS, seed: int = 0, threshold_sd: float = 0.0) -> list[dict]:
    """One row per answer: every participant sees every (cell, level) `trials_per_level` times.
    threshold_sd > 0 gives each participant their own threshold (people differ), N(threshold, sd)."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(participants):
        for obs in observers:
            own = Observer(**{**asdict(obs), "threshold": obs.threshold + threshold_sd * rng.standard_normal()})
            for level in levels:
                for correct in rng.random(trials_per_level) < own.rate(level):
                    rt = float(np.clip(rng.lognormal(math.log(1800), 0.4), 350, 20000))
                    rows.append({"participant": f"sim{p:03d}", "method": obs.method, "style": obs.style,
                                 "level": int(level), "correct": int(correct), "rt_ms": round(rt)})
    return rows


def write_trials_csv(rows: Sequence[dict], path: str | os.PathLike) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[*COLUMNS, "rt_ms"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_write(path) as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
    return Path(path)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m styleid_guidance.perception.psychometric.simulate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("output", metavar="TRIALS.csv")
    p.add_argument("--participants", type=int, default=24)
    p.add_argument("--trials-per-level", type=int, default=2)
    p.add_argument("--threshold-sd", type=float, default=0.0, help="between-participant SD of the threshold, in levels")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    rows = simulate_trials(DEMO_OBSERVERS, args.participants, args.trials_per_level, seed=args.seed,
                           threshold_sd=args.threshold_sd)
    out = write_trials_csv(rows, args.output)
    truth = {f"{o.method}/{o.style}": asdict(o) for o in DEMO_OBSERVERS}
    with atomic_write(out.with_suffix(".truth.json")) as tmp:
        tmp.write_text(json.dumps(truth, indent=2) + "\n")
    for key, obs in truth.items():
        print(f"{key}: true threshold {obs['threshold']}")
    print(f"wrote {len(rows)} trials to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
