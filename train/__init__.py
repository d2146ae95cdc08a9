"""Training for StyleID encoders: StyleBench-S data, identity-balanced sampling, an accelerate trainer.

Entry points: `styleid-train` / `python -m train` (see `train.cli`), `python -m train.smoke_data OUT`.
"""
from .config import TrainConfig
from .sampler import IdentityBalancedBatchSampler

__all__ = ["TrainConfig", "IdentityBalancedBatchSampler", "train"]


def train(cfg: TrainConfig, progress: bool = True):
    """Train (or resume) per `cfg`; returns the OUTPUT/final folder. See `train.trainer`."""
    from .trainer import train as _train

    return _train(cfg, progress=progress)
