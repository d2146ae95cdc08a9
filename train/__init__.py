"""Training StyleID encoders: StyleBench-S data, identity-balanced sampling, an accelerate trainer.

    from styleid_guidance.train import TrainConfig, train
    final_dir = train(TrainConfig(data="stylebench-s", output="runs/styleid"))

On the command line: `styleid train` (see `styleid train --help`).
"""
from __future__ import annotations

from pathlib import Path

from .config import TrainConfig

__all__ = ["TrainConfig", "train"]


def train(cfg: TrainConfig, progress: bool = True) -> Path:
    """Train (or resume) per `cfg`; returns the OUTPUT/final folder. See `styleid_guidance.train.trainer`."""
    from .trainer import train as _train

    return _train(cfg, progress=progress)
