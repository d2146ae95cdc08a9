"""One training step's model side: the encoder's two branches and the paper's objective in one module.

The frozen branch (LoRA off, no grad) gives ẑ⁽⁰⁾ for L_reg; the adapted branch gives ẑ. With
`gather`, L_scon contrasts this process's anchors with the embeddings of every process.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn as nn

from styleid_guidance.encoder.model import StyleIDEncoder
from styleid_guidance.losses import StyleIDObjective
from styleid_guidance.metrics.verification import mean_pairwise_cosine

from .config import TrainConfig
from .runs.distributed import gather_for_contrast

# what one step reports: the loss terms and the guard's spread statistic (adapted and frozen branch)
TERMS = ("loss", "ang", "scon", "reg", "cos", "cos0")


class TrainStep(nn.Module):
    """Encoder + objective in one module, so DDP sees (and syncs) every trainable parameter."""

    def __init__(self, encoder: StyleIDEncoder, objective: StyleIDObjective, gather: bool = False) -> None:
        super().__init__()
        self.encoder = encoder
        self.objective = objective
        self.gather = gather

    def forward(self, pixels: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad(), self.encoder.adapter_disabled():
            z0 = self.encoder.encode_pixels(pixels)
        z = self.encoder.encode_pixels(pixels)
        contrast = gather_for_contrast(z, labels) if self.gather else None
        out = self.objective(z, labels, z0, contrast=contrast)
        return {**out, "cos": mean_pairwise_cosine(z), "cos0": mean_pairwise_cosine(z0)}


def build_encoder(cfg: TrainConfig) -> StyleIDEncoder:
    # seeded so a random backbone (test-tiny, --pretrained none) is the same on every rank and resume
    torch.manual_seed(cfg.seed)
    return StyleIDEncoder.from_open_clip(cfg.backbone, pretrained=cfg.pretrained, lora_rank=cfg.lora_rank,
                                         lora_alpha=cfg.lora_alpha, lora_targets=cfg.lora_targets)


def lr_lambda(cfg: Any) -> Callable[[int], float]:
    """The learning-rate factor at each step of `cfg` (TrainConfig or DistillConfig): linear warm-up reaching the set lr
    at step `warmup_steps - 1`, then constant, cosine or linear decay to 0 at `max_steps`.

    Not diffusers' `get_scheduler`: its warm-up starts at factor 0 (step / warmup), so the first update is lost and
    every later step is one behind; runs and checkpoints made with this schedule would resume differently."""
    def factor(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.lr_schedule == "constant":
            return 1.0
        span = max(1, cfg.max_steps - cfg.warmup_steps)
        progress = min(1.0, (step - cfg.warmup_steps) / span)
        return 0.5 * (1 + math.cos(math.pi * progress)) if cfg.lr_schedule == "cosine" else 1.0 - progress

    return factor
