"""Stop a training run that has gone wrong, before it writes a broken encoder.

Two failure modes are caught:

* **Divergence** — a non-finite loss or gradient norm. The step is not applied (the optimizer never
  sees the NaN), so the weights and the last checkpoint stay finite.
* **Collapse** — every embedding in the batch pointing the same way, so the encoder scores any two
  images "same". The statistic is the batch's mean pairwise cosine of the adapted embeddings
  (1.0 = collapsed); the frozen branch's value is logged beside it for scale. A run is stopped when
  that mean stays at or above `threshold` for `patience` consecutive log intervals. While the
  spread is suspect, the trainer writes no checkpoint, so the ones kept are from before it.

The guard only decides; the trainer turns `TrainingStopped` into a one-line error (exit code 2).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from styleid_guidance.errors import StyleIDError


class TrainingStopped(StyleIDError):
    """The run was stopped by the guard; the message says why and what to try."""


@dataclass
class TrainingGuard:
    """Watches each step's loss and gradient norm, and each log interval's spread."""

    threshold: float = 0.9999
    patience: int = 5
    suspect_logs: int = 0  # consecutive log intervals at or above the threshold

    def check_step(self, step: int, terms: dict[str, float], grad_norm: float, hint: str) -> None:
        """Raise if the loss or the gradient of this step is not finite."""
        bad = {k: v for k, v in terms.items() if not math.isfinite(v)}
        if bad or not math.isfinite(grad_norm):
            what = (", ".join(f"{k}={v}" for k, v in bad.items()) if bad else f"gradient norm {grad_norm}")
            raise TrainingStopped(f"training stopped at step {step}: the loss went non-finite ({what}); {hint}")

    def check_spread(self, step: int, spread: float, frozen_spread: float, hint: str) -> None:
        """Record one log interval's mean pairwise cosine; raise after `patience` collapsed intervals."""
        if not math.isfinite(spread):
            raise TrainingStopped(f"training stopped at step {step}: the embeddings went non-finite; {hint}")
        self.suspect_logs = self.suspect_logs + 1 if spread >= self.threshold else 0
        if self.suspect_logs >= self.patience:
            raise TrainingStopped(
                f"training stopped at step {step}: the embeddings collapsed (mean pairwise cosine in the batch "
                f"{spread:.5f} ≥ {self.threshold} for {self.suspect_logs} log intervals; frozen branch "
                f"{frozen_spread:.3f}), so the encoder would call every pair 'same'; {hint}"
            )

    @property
    def suspect(self) -> bool:
        """True while the spread is at or above the threshold (no checkpoint should be written)."""
        return self.suspect_logs > 0
