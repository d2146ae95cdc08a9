"""JoJoGAN fine-tuning settings (kept free of torch so the CLI can describe them without importing it)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from styleid_guidance.errors import Arg, StyleIDError

ID_LOSSES = ("styleid", "arcface", "none")


def _opt(default: Any, help: str, group: str, **extra: Any) -> Any:
    """A field and its `styleid jojogan train` flag (cli.config_options.add_dataclass_options); upstream's
    underscore spellings stay as aliases."""
    return field(default=default, metadata={"help": help, "group": group, **extra})


@dataclass
class FinetuneConfig:
    # the project's name for a step count (train, distill); upstream's num_iter stays an alias and JoJoGAN.finetune's keyword
    max_steps: int = _opt(300, "fine-tuning iterations", "fine-tuning", aliases=("--num-iter", "--num_iter"))
    lr: float = _opt(2e-3, "Adam learning rate", "fine-tuning")
    # the notebook's slider: 1 = swapped layers fully random
    alpha: float = _opt(1.0, "style strength in [0, 1]", "fine-tuning")
    preserve_color: bool = _opt(False, "swap only w+ layers 9, 11, 15-17, keeping the photo's colours", "fine-tuning",
                                aliases=("--preserve_color",))
    # not stated in the paper; 1 x (1 - cos) is of the order of the style loss
    id_weight: float = _opt(1.0, "weight of the identity term", "identity", aliases=("--id_weight",))
    seed: int = _opt(0, "random seed", "", cli=False)  # the shared --seed flag (train and stylize)

    def __post_init__(self) -> None:
        def finite(value: float) -> bool:
            return isinstance(value, (int, float)) and math.isfinite(value)

        if not (isinstance(self.max_steps, int) and self.max_steps >= 1):
            raise StyleIDError("{name} must be a whole number ≥ 1, got {value}", param="max_steps",
                               name=Arg("max_steps"), value=self.max_steps)
        if not (finite(self.lr) and self.lr > 0):
            raise StyleIDError("{name} must be a finite number > 0, got {value}", param="lr", name=Arg("lr"), value=self.lr)
        if not (finite(self.alpha) and 0.0 <= self.alpha <= 1.0):
            raise StyleIDError("{name} must be in [0, 1] (style strength), got {value}", param="alpha", name=Arg("alpha"),
                               value=self.alpha)
        if not (finite(self.id_weight) and self.id_weight >= 0):
            raise StyleIDError("{name} must be a finite number ≥ 0, got {value}", param="id_weight", name=Arg("id_weight"),
                               value=self.id_weight)

    def validate(self) -> None:
        """Check again after fields were changed in place."""
        self.__post_init__()
