"""What makes a checkpoint resumable: a fingerprint of everything that changes what its tensors mean."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from styleid_guidance.errors import StyleIDError

from . import checkpoint as ckpt
from ..config import TrainConfig

# settings that change what a checkpoint's tensors or the sample stream mean: resuming across a change
# of any of them would silently train something else
INCOMPATIBLE = ("backbone", "pretrained", "lora_rank", "lora_alpha", "lora_targets", "ids_per_batch",
                "images_per_id", "grad_accum", "seed", "augment")


def frozen_checksum(module: nn.Module) -> float:
    """A cheap fingerprint of the frozen weights: catches resuming on another backbone init."""
    total = 0.0
    with torch.no_grad():
        for p in module.parameters():
            if not p.requires_grad:
                total += float(p.detach().double().abs().sum())
    return total


def fingerprint(cfg: TrainConfig, dataset: Any, encoder: nn.Module, num_processes: int) -> dict[str, Any]:
    ids = "\n".join(dataset.identities) if dataset is not None else ""
    return {
        **{k: getattr(cfg, k) for k in INCOMPATIBLE},
        "num_processes": num_processes,
        "identities_sha1": hashlib.sha1(ids.encode()).hexdigest(),
        "num_classes": dataset.num_classes if dataset is not None else 0,
        "frozen_checksum": frozen_checksum(encoder),
    }


def check_compatible(saved: dict[str, Any], current: dict[str, Any], where: Path) -> None:
    diffs = []
    for key, now in current.items():
        before = saved.get(key)
        if key == "frozen_checksum":
            if before is None or abs(before - now) > 1e-6 * max(1.0, abs(now)):
                diffs.append("frozen backbone weights")
        elif before != now:
            diffs.append(f"{key} {before!r} → {now!r}")
    if diffs:
        raise StyleIDError(
            f"cannot resume from {where}: the run changed ({'; '.join(diffs)}); "
            f"use a new --output or --resume never with an empty output folder"
        )


def changed_settings(saved_config: dict[str, Any], cfg: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """Settings a resume may change (with a warning): everything but the fingerprint, --resume, --max-steps."""
    return {k: (saved_config.get(k), v) for k, v in cfg.to_dict().items()
            if k not in INCOMPATIBLE and saved_config.get(k) != v and k not in ("resume", "max_steps")}


def resume_point(cfg: TrainConfig, output: Path) -> Path | None:
    if cfg.resume == "never":
        if ckpt.list_checkpoints(output):
            raise StyleIDError(f"--output {output} already holds checkpoints; use --resume auto, or a new --output")
        return None
    if cfg.resume == "auto":
        return ckpt.latest_checkpoint(output)
    path = Path(cfg.resume)
    if not (path / ckpt.STATE_FILE).is_file():
        raise StyleIDError(f"--resume {path}: not a training checkpoint folder (no {ckpt.STATE_FILE})")
    return path
