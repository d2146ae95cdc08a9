"""JoJoGAN fine-tuning settings (kept free of torch so the CLI can describe them without importing it)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from styleid_guidance.errors import StyleIDError

ID_LOSSES = ("styleid", "arcface", "none")


@dataclass
class FinetuneConfig:
    num_iter: int = 300
    lr: float = 2e-3
    alpha: float = 1.0  # style strength in [0, 1] (the notebook's slider): 1 = swapped layers fully random
    preserve_color: bool = False
    id_weight: float = 1.0  # not stated in the paper; 1 x (1 - cos) is of the order of the style loss
    seed: int = 0

    def __post_init__(self) -> None:
        def finite(value: float) -> bool:
            return isinstance(value, (int, float)) and math.isfinite(value)

        if not (isinstance(self.num_iter, int) and self.num_iter >= 1):
            raise StyleIDError(f"num_iter must be a whole number ≥ 1, got {self.num_iter}")
        if not (finite(self.lr) and self.lr > 0):
            raise StyleIDError(f"lr must be a finite number > 0, got {self.lr}")
        if not (finite(self.alpha) and 0.0 <= self.alpha <= 1.0):
            raise StyleIDError(f"alpha must be in [0, 1] (style strength), got {self.alpha}")
        if not (finite(self.id_weight) and self.id_weight >= 0):
            raise StyleIDError(f"id_weight must be a finite number ≥ 0, got {self.id_weight}")

    def validate(self) -> None:
        """Check again after fields were changed in place."""
        self.__post_init__()
