"""This project's encoder folders, written by `StyleIDEncoder.save_pretrained`:

    styleid_config.json        the backbone (StyleIDConfig, without LoRA)
    backbone.safetensors       its weights, open_clip names
    adapter_config.json        peft's LoRA settings (the one place they live)
    adapter_model.safetensors  peft's LoRA weights

Reading checks everything before anything is used: damaged JSON or safetensors, a config missing a
field, adapter weights with missing, extra or wrongly shaped tensors are each a one-line error that
names the file — never a peft warning followed by a silently wrong model.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from .config import LoraSettings, StyleIDConfig
from ..errors import StyleIDError
from ..files.safeload import load_safetensors, read_json

CONFIG_NAME = "styleid_config.json"
BACKBONE_WEIGHTS = "backbone.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def read_config(folder: Path) -> StyleIDConfig:
    return StyleIDConfig.from_dict(read_json(folder / CONFIG_NAME), where=folder / CONFIG_NAME)


def read_backbone_state(folder: Path) -> dict[str, torch.Tensor]:
    weights = folder / BACKBONE_WEIGHTS
    if not weights.exists():
        raise StyleIDError(f"{weights}: missing; the folder was not written by save_pretrained")
    return load_safetensors(weights)


def read_lora_settings(folder: Path, config: StyleIDConfig) -> LoraSettings:
    """LoRA settings from peft's adapter_config.json; none (rank 0) when the folder has no adapter."""
    path = folder / ADAPTER_CONFIG
    if not path.exists():
        named = read_json(folder / CONFIG_NAME).get("lora")  # the config file's own words, not the dataclass default
        if isinstance(named, dict) and int(named.get("rank", 0) or 0) > 0:  # an old folder that still names a rank
            raise StyleIDError(f"{folder}: config says LoRA rank {config.lora.lora_rank} but {ADAPTER_CONFIG} is missing")
        return LoraSettings(lora_rank=0)
    raw = read_json(path)
    if not isinstance(raw, dict) or str(raw.get("peft_type", "LORA")).upper() != "LORA":
        raise StyleIDError(f"{path}: not a peft LoRA adapter config")
    missing = [k for k in ("r", "lora_alpha", "target_modules") if k not in raw]
    if missing:
        raise StyleIDError(f"{path}: missing field(s) {', '.join(missing)}")
    targets = raw["target_modules"]
    try:
        return LoraSettings(lora_rank=int(raw["r"]), lora_alpha=float(raw["lora_alpha"]),
                            lora_dropout=float(raw.get("lora_dropout") or 0.0),
                            lora_targets=sorted(targets) if isinstance(targets, (list, set)) else targets)
    except (TypeError, ValueError, StyleIDError) as err:
        raise StyleIDError(f"{path}: {err}") from None


def check_state(expected: dict[str, torch.Tensor], state: dict[str, Any], where: object, what: str = "weights") -> None:
    """Same keys and shapes as the model, or one line saying what differs."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing:
        raise StyleIDError(f"{where}: checkpoint is missing {len(missing)} {what}, e.g. {missing[0]!r}; is it the right model?")
    if unexpected:
        raise StyleIDError(f"{where}: checkpoint has {len(unexpected)} unexpected {what}, e.g. {unexpected[0]!r}")
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise StyleIDError(f"{where}: {what[:-1] if what.endswith('s') else what} {key!r} has shape {tuple(value.shape)}, "
                               f"expected {tuple(expected[key].shape)}")


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], where: object) -> None:
    check_state(module.state_dict(), state, where)
    module.load_state_dict(state, strict=True)


def load_adapter(peft_model: nn.Module, folder: Path) -> None:
    """Load adapter_model.safetensors into a peft model built with the folder's adapter config."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    path = folder / ADAPTER_WEIGHTS
    if not path.exists():
        raise StyleIDError(f"{folder}: {ADAPTER_CONFIG} is there but {ADAPTER_WEIGHTS} is missing")
    state = load_safetensors(path)
    check_state(get_peft_model_state_dict(peft_model), state, path, what="adapter weights")
    set_peft_model_state_dict(peft_model, state)


def save_adapter(peft_model: nn.Module, folder: Path) -> None:
    peft_model.save_pretrained(str(folder))
