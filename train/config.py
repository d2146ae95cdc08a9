"""Training configuration: one dataclass, paper defaults, loaded from YAML/JSON and overridden by flags.

Precedence: dataclass defaults (the paper's settings, SPEC.md §2) < config file < command-line flags.
Config files use the same names as the dataclass fields (`ids_per_batch: 56`; dashes also work).
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from styleid_guidance.errors import StyleIDError

SCHEDULES = ("constant", "cosine", "linear")
PRECISIONS = ("no", "fp16", "bf16")
TRACKERS = ("none", "tensorboard", "wandb")


@dataclass
class TrainConfig:
    # data
    data: str | None = None  # StyleBench-S root or identity folders
    layout: str = "auto"  # auto | stylebench | folders
    output: str = "outputs/styleid"
    check_images: bool = True  # header-check every image once at start-up (skips unreadable files)
    augment: bool = True
    num_workers: int = 4
    # model
    backbone: str = "ViT-L-14"  # open_clip name, or "test-tiny"
    pretrained: str | None = "openai"  # open_clip pretrained tag; None/"none" = random weights
    lora_rank: int = 8
    lora_alpha: float = 1.0  # alpha/rank = 0.125 as in the public settings
    lora_targets: str = "attn+mlp"
    grad_checkpointing: bool = False
    # objective (paper: m = 0.5, α = 32, τ = 0.1, λ_scon = 0.6, λ_reg = 0.1)
    margin: float = 0.5
    scale: float = 32.0
    temperature: float = 0.1
    lambda_scon: float = 0.6
    lambda_reg: float = 0.1
    # optimisation (paper: AdamW, lr 2e-4, 56 × 2, 30k steps; schedule and weight decay unstated)
    lr: float = 2e-4
    weight_decay: float = 0.01  # AdamW's default
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    max_steps: int = 30_000
    ids_per_batch: int = 56  # P, per process
    images_per_id: int = 2  # K
    grad_accum: int = 1
    max_grad_norm: float = 0.0  # 0 = no clipping
    mixed_precision: str = "no"
    seed: int = 0
    supcon_gather: bool = True  # L_scon over the global batch of all processes (no-op on one process)
    # the guard (train/guard.py): stop when the batch's mean pairwise cosine stays this high
    collapse_threshold: float = 0.9999
    collapse_patience: int = 5  # consecutive log intervals
    # evaluation, checkpoints, logging
    eval_pairs: str | None = None
    eval_every: int = 1000
    eval_crop: str = "center"
    save_every: int = 1000
    keep_last: int = 3
    log_every: int = 10
    report_to: str = "none"
    resume: str = "auto"  # auto (latest checkpoint in OUTPUT, if any) | never | a checkpoint folder

    def validate(self) -> "TrainConfig":
        if self.pretrained in ("none", "None", "random", ""):
            self.pretrained = None
        if self.backbone == "test-tiny":
            self.pretrained = None

        def finite(name: str, low: float, strict: bool) -> tuple[bool, str]:
            value = getattr(self, name)
            ok = isinstance(value, (int, float)) and math.isfinite(value) and (value > low if strict else value >= low)
            flag = "--" + name.replace("_", "-")
            return ok, f"{flag} must be a finite number {'>' if strict else '≥'} {low:g}, got {value}"

        checks = [
            finite("lr", 0, strict=True),
            finite("weight_decay", 0, strict=False),
            finite("margin", 0, strict=False),
            finite("scale", 0, strict=True),
            finite("temperature", 0, strict=True),
            finite("lambda_scon", 0, strict=False),
            finite("lambda_reg", 0, strict=False),
            finite("max_grad_norm", 0, strict=False),
            finite("lora_alpha", 0, strict=True),
            (self.margin < math.pi / 2, f"--margin is an angle in radians below π/2, got {self.margin}"),
            (0 < self.collapse_threshold <= 1, f"--collapse-threshold must be in (0, 1], got {self.collapse_threshold}"),
            (self.collapse_patience >= 1, f"--collapse-patience must be ≥ 1, got {self.collapse_patience}"),
            (self.warmup_steps >= 0, f"--warmup-steps must be ≥ 0, got {self.warmup_steps}"),
            (self.max_steps >= 0, f"--max-steps must be ≥ 0, got {self.max_steps}"),
            (self.grad_accum >= 1, f"--grad-accum must be ≥ 1, got {self.grad_accum}"),
            (self.save_every >= 1, f"--save-every must be ≥ 1, got {self.save_every}"),
            (self.eval_every >= 1, f"--eval-every must be ≥ 1, got {self.eval_every}"),
            (self.keep_last >= 1, f"--keep-last must be ≥ 1, got {self.keep_last}"),
            (self.log_every >= 1, f"--log-every must be ≥ 1, got {self.log_every}"),
            (self.lora_rank >= 1, f"--lora-rank must be ≥ 1 to train (got {self.lora_rank})"),
            (self.num_workers >= 0, f"--num-workers must be ≥ 0, got {self.num_workers}"),
            (self.lr_schedule in SCHEDULES, f"--lr-schedule must be one of {', '.join(SCHEDULES)}, got {self.lr_schedule!r}"),
            (self.mixed_precision in PRECISIONS, f"--mixed-precision must be one of {', '.join(PRECISIONS)}, got {self.mixed_precision!r}"),
            (self.report_to in TRACKERS, f"--report-to must be one of {', '.join(TRACKERS)}, got {self.report_to!r}"),
            (self.layout in ("auto", "stylebench", "folders"), f"--layout must be auto, stylebench or folders, got {self.layout!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise StyleIDError(message)
        if self.eval_pairs and not Path(self.eval_pairs).is_file():
            raise StyleIDError(f"--eval-pairs {self.eval_pairs}: no such file")
        if self.max_steps > 0 and not self.data:
            raise StyleIDError("--data is required to train (only --max-steps 0, which exports the initial encoder, runs without it)")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELD_NAMES = {f.name for f in fields(TrainConfig)}


def load_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise StyleIDError(f"--config {path}: no such file")
    text = path.read_text()
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            values = yaml.safe_load(text) or {}
        else:
            values = json.loads(text)
    except Exception as err:  # yaml and json raise different error types; both mean "fix the file"
        raise StyleIDError(f"--config {path}: cannot parse ({type(err).__name__}: {str(err).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise StyleIDError(f"--config {path}: expected a mapping of option names to values")
    values = {k.replace("-", "_"): v for k, v in values.items()}
    unknown = sorted(set(values) - FIELD_NAMES)
    if unknown:
        raise StyleIDError(f"--config {path}: unknown option(s) {', '.join(unknown)}")
    return values


def build_config(file_values: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    values = {**(file_values or {}), **{k: v for k, v in (overrides or {}).items() if v is not None}}
    types = {f.name: f.type for f in fields(TrainConfig)}
    for name in list(values):
        if values[name] is not None and types[name] in ("int", "float") and isinstance(values[name], str):
            try:
                values[name] = int(values[name]) if types[name] == "int" else float(values[name])
            except ValueError:
                raise StyleIDError(f"option {name}: expected a number, got {values[name]!r}") from None
    return TrainConfig(**values).validate()
