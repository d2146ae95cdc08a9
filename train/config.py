"""Training configuration: one dataclass, the paper's defaults, loaded from YAML/JSON, overridden by flags.

Precedence: dataclass defaults (the StyleID paper's settings, Yun et al., SIGGRAPH 2026) < config file < command-line
flags.
Config files use the field names (`ids_per_batch: 56`; dashes also work); every field is a flag
(`--ids-per-batch 56`), its help text is the field's `help` metadata. The dataclass checks itself
on construction (`__post_init__`), so a bad value never reaches the trainer, from any entry point.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from styleid_guidance.encoder.config import LoraSettings
from styleid_guidance.errors import Arg, StyleIDError, bad_value
from styleid_guidance.options import DATA_LAYOUTS, MIXED_PRECISIONS, TRAINING_LAYOUTS

SCHEDULES = ("constant", "cosine", "linear")
TRACKERS = ("none", "tensorboard", "wandb")
LAYOUTS = TRAINING_LAYOUTS  # the flag's choices are options.DATA_LAYOUTS (score's benchmark layouts too)
GROUPS = {"data": "data", "model": "model", "objective": "objective (L_ang + λ_scon·L_scon + λ_reg·L_reg)",
          "optim": "optimisation", "guard": "guard (stops a run that diverges or collapses)",
          "log": "evaluation, checkpoints, logging"}


_LORA = LoraSettings()  # the one place the LoRA defaults are set


def _opt(default: Any, help: str, group: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, "group": group, **extra})


@dataclass
class TrainConfig:
    # data
    data: str | None = _opt(None, "StyleBench-S root (p3/ + {method}/{style}/) or one folder per identity", "data", metavar="DIR")
    layout: str = _opt("auto", "dataset layout (training data: auto, stylebench or folders)", "data", choices=DATA_LAYOUTS)
    output: str = _opt("outputs/styleid", "run folder: checkpoints, metrics.jsonl, final/", "data", aliases=("-o",), metavar="DIR")
    check_images: bool = _opt(True, "header-check every image once at start-up (unreadable files are skipped)", "data")
    augment: bool = _opt(True, "random resized crop + horizontal flip", "data")
    num_workers: int = _opt(4, "data loader processes", "data")
    # model
    backbone: str = _opt("ViT-L-14", "open_clip model name, or test-tiny (a random 64-px model for smoke runs)", "model")
    pretrained: str | None = _opt("openai", "open_clip pretrained tag; none = random weights", "model")
    lora_rank: int = _opt(_LORA.lora_rank, "LoRA rank r", "model")
    lora_alpha: float = _opt(_LORA.lora_alpha, "LoRA alpha (scaling alpha/r; see train/README.md for why alpha = r)", "model")
    lora_targets: str = _opt(_LORA.lora_targets, "layers LoRA adapts: attn, mlp or attn+mlp", "model")
    grad_checkpointing: bool = _opt(False, "recompute activations in backward to save memory", "model")
    # objective (paper: m = 0.5, α = 32, τ = 0.1, λ_scon = 0.6, λ_reg = 0.1)
    margin: float = _opt(0.5, "angular margin m of L_ang (radians)", "objective")
    angular_scale: float = _opt(32.0, "angular scale α of L_ang", "objective")
    temperature: float = _opt(0.1, "SupCon temperature τ", "objective")
    lambda_scon: float = _opt(0.6, "weight of L_scon", "objective")
    lambda_reg: float = _opt(0.1, "weight of L_reg (distance to the frozen branch)", "objective")
    supcon_gather: bool = _opt(True, "L_scon over the batches of all processes, not just this one's", "objective")
    # optimisation (paper: AdamW, lr 2e-4, 56 × 2, 30k steps; schedule and weight decay unstated)
    lr: float = _opt(2e-4, "AdamW learning rate", "optim")
    weight_decay: float = _opt(0.01, "AdamW weight decay", "optim")
    lr_schedule: str = _opt("constant", "learning-rate schedule after warm-up", "optim", choices=SCHEDULES)
    warmup_steps: int = _opt(0, "linear warm-up steps", "optim")
    max_steps: int = _opt(30_000, "optimizer steps; 0 exports the initial (untrained) encoder", "optim")
    ids_per_batch: int = _opt(56, "P: identities per batch on each process", "optim")
    images_per_id: int = _opt(2, "K: images per identity (≥ 2, so every anchor has a positive)", "optim")
    grad_accum: int = _opt(1, "gradient accumulation steps", "optim")
    max_grad_norm: float = _opt(0.0, "clip gradients to this norm; 0 = off", "optim")
    mixed_precision: str = _opt("no", "accelerate mixed precision", "optim", choices=MIXED_PRECISIONS)
    seed: int = _opt(0, "seed of the sampler, the angular head and random backbones", "optim")
    # the guard (train/runs/guard.py)
    collapse_threshold: float = _opt(0.9999, "batch mean pairwise cosine counted as collapsed", "guard")
    collapse_patience: int = _opt(5, "collapsed log intervals in a row that stop the run", "guard")
    # evaluation, checkpoints, logging
    eval_pairs: str | None = _opt(None, "pairs CSV (the `styleid eval` format) scored every --eval-every steps", "log", metavar="CSV")
    eval_every: int = _opt(1000, "steps between held-out evaluations", "log")
    eval_crop: str = _opt("center", "crop for --eval-pairs images: center matches the training preprocessing", "log",
                          choices=("center", "none", "face"))
    save_every: int = _opt(1000, "steps between checkpoints", "log")
    keep_last: int = _opt(3, "checkpoints kept", "log")
    log_every: int = _opt(10, "steps per metrics.jsonl line", "log")
    report_to: str = _opt("none", "also log to tensorboard or wandb", "log", choices=TRACKERS)
    resume: str = _opt("auto", "auto (the newest checkpoint in --output), never, or a checkpoint folder", "log")

    def __post_init__(self) -> None:
        if self.pretrained in ("none", "None", "random", ""):
            self.pretrained = None
        if self.backbone == "test-tiny":
            self.pretrained = None

        def number(name: str, low: float, strict: bool) -> tuple[bool, str]:
            value = getattr(self, name)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and (
                value > low if strict else value >= low)
            return ok, name, f"must be a finite number {'>' if strict else '≥'} {low:g}, got {value}"

        def choice(name: str, options: tuple[str, ...]) -> tuple[bool, str]:
            value = getattr(self, name)
            return value in options, name, f"must be one of {', '.join(options)}, got {value!r}"

        checks = [
            number("lr", 0, strict=True), number("weight_decay", 0, strict=False), number("margin", 0, strict=False),
            number("angular_scale", 0, strict=True), number("temperature", 0, strict=True),
            number("lambda_scon", 0, strict=False), number("lambda_reg", 0, strict=False),
            number("max_grad_norm", 0, strict=False), number("lora_alpha", 0, strict=True),
            (self.margin < math.pi / 2, "margin", f"is an angle in radians below π/2, got {self.margin}"),
            (0 < self.collapse_threshold <= 1, "collapse_threshold", f"must be in (0, 1], got {self.collapse_threshold}"),
            *((getattr(self, n) >= lo, n, f"must be ≥ {lo}, got {getattr(self, n)}") for n, lo in (
                ("collapse_patience", 1), ("warmup_steps", 0), ("max_steps", 0), ("grad_accum", 1), ("save_every", 1),
                ("eval_every", 1), ("keep_last", 1), ("log_every", 1), ("num_workers", 0), ("ids_per_batch", 1))),
            (self.lora_rank >= 1, "lora_rank", f"must be ≥ 1 to train, got {self.lora_rank}"),
            (self.images_per_id >= 2, "images_per_id", f"must be ≥ 2 so every anchor has a positive, got {self.images_per_id}"),
            choice("lr_schedule", SCHEDULES), choice("mixed_precision", MIXED_PRECISIONS), choice("report_to", TRACKERS),
            choice("layout", LAYOUTS),
        ]
        for ok, name, text in checks:
            if not ok:
                raise bad_value(name, text)
        if self.eval_pairs and not Path(self.eval_pairs).is_file():
            raise StyleIDError("{pairs}: no such file", param="eval_pairs", pairs=Arg("eval_pairs", self.eval_pairs))
        if self.max_steps > 0 and not self.data:
            raise StyleIDError("{data} is required to train (only {steps}, which exports the initial encoder, runs without "
                               "it)", param="data", data=Arg("data"), steps=Arg("max_steps", 0))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

