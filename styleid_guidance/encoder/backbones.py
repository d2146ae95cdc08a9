"""Building the vision tower (open_clip, or a ViT from saved settings) and naming the layers LoRA adapts.

Model code only: no file or network I/O beyond what open_clip's factory does for `pretrained`.
"""
from __future__ import annotations

import contextlib
import logging
from functools import partial
from pathlib import Path
from typing import Any, Iterator, Sequence

import open_clip
import torch
import torch.nn as nn
from open_clip.transformer import LayerNorm, QuickGELU, VisionTransformer

from .config import LORA_TARGETS, OPENAI_MEAN, OPENAI_STD, StyleIDConfig
from ..errors import StyleIDError

open_clip.add_model_config(Path(__file__).parent / "model_configs")

TEST_TINY = "test-tiny"  # the built-in 64-px random test backbone (model_configs/test-tiny.json)
_MLP_NAMES = ("c_fc", "c_proj", "fc1", "fc2")
_ATTN_LINEAR_NAMES = ("in_proj", "qkv", "q_proj", "k_proj", "v_proj", "proj", "out_proj")


def lora_target_modules(visual: nn.Module, targets: str | Sequence[str]) -> list[str]:
    """Names of the linear layers to adapt: attention projections ("attn") and/or MLP ("mlp")."""
    if not isinstance(targets, str):
        return list(targets)
    wanted = set(targets.split("+"))
    if targets not in LORA_TARGETS:
        raise StyleIDError(f"lora targets must be 'attn', 'mlp', 'attn+mlp' or a list of module names, got {targets!r}")
    names: list[str] = []
    for name, module in visual.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        leaf = name.rsplit(".", 1)[-1]
        parent = name.rsplit(".", 2)[-2] if "." in name else ""
        if "mlp" in wanted and leaf in _MLP_NAMES:
            names.append(name)
        elif "attn" in wanted and leaf in _ATTN_LINEAR_NAMES and "attn" in parent:
            names.append(name)
    if not names:
        raise StyleIDError(f"no modules match lora targets {targets!r} in this backbone")
    return names


def vit_from_kwargs(kw: dict[str, Any]) -> VisionTransformer:
    kw = dict(kw)
    act = QuickGELU if kw.pop("act", "quick_gelu") == "quick_gelu" else nn.GELU
    eps = kw.pop("layer_norm_eps", 1e-5)
    return VisionTransformer(**kw, act_layer=act, norm_layer=partial(LayerNorm, eps=eps))


def build_backbone(spec: dict[str, Any], pretrained: str | None = None) -> nn.Module:
    """The vision tower a `StyleIDConfig.backbone` describes (weights from `pretrained`, or random)."""
    if "vit" in spec:
        return vit_from_kwargs(spec["vit"])
    name = spec["open_clip_model"]
    try:
        with _no_random_init_warning():
            model = open_clip.create_model(name, pretrained=pretrained, force_quick_gelu=spec.get("quick_gelu", False))
    except RuntimeError as err:
        raise StyleIDError(f"open_clip model {name!r} with pretrained={pretrained!r}: {str(err).splitlines()[0][:300]}") from None
    return model.visual


def check_model_name(model_name: str) -> None:
    if model_name not in open_clip.list_models():
        close = [m for m in open_clip.list_models() if model_name.lower().split("-")[0] in m.lower()][:5]
        hint = f"; similar: {', '.join(close)}" if close else ""
        raise StyleIDError(f"unknown open_clip model {model_name!r} (see open_clip.list_models(), or use {TEST_TINY!r}){hint}")


def open_clip_config(model_name: str, pretrained: str | None, visual: nn.Module) -> StyleIDConfig:
    """The config of a freshly built open_clip tower (size, embedding width, normalisation)."""
    mean = getattr(visual, "image_mean", None) or OPENAI_MEAN
    std = getattr(visual, "image_std", None) or OPENAI_STD
    size = visual.image_size if isinstance(visual.image_size, int) else visual.image_size[0]
    return StyleIDConfig(backbone={"open_clip_model": model_name, "quick_gelu": quick_gelu_for(model_name, pretrained)}, image_size=int(size),
                         embedding_dim=probe_output_dim(visual, int(size)), image_mean=tuple(mean), image_std=tuple(std),
                         source=f"open_clip:{model_name}/{pretrained or 'random'}")


def quick_gelu_for(model_name: str, pretrained: str | None) -> bool:
    # open_clip does not switch QuickGELU on for ViT-L-14/openai by itself: the pretrained tag says so
    return bool(pretrained) and bool(open_clip.get_pretrained_cfg(model_name, pretrained).get("quick_gelu", False))


class _DropRandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "initialized randomly" not in record.getMessage()


@contextlib.contextmanager
def _no_random_init_warning() -> Iterator[None]:
    """open_clip warns about random init even when we load our own weights right after. It logs through the
    root logger in some versions and its own loggers ("open_clip", "open_clip.factory", ...) in others. A
    logger's filter sees only records logged on that very logger (not those its children pass up), so filter
    the root, "open_clip", "open_clip.factory" and every other open_clip logger that exists."""
    names = {"open_clip", "open_clip.factory"} | {n for n in logging.Logger.manager.loggerDict if n.startswith("open_clip.")}
    loggers = [logging.getLogger()] + [logging.getLogger(n) for n in sorted(names)]
    f = _DropRandomInitWarning()
    for lg in loggers:
        lg.addFilter(f)
    try:
        yield
    finally:
        for lg in loggers:
            lg.removeFilter(f)


def uses_quick_gelu(visual: nn.Module) -> bool:
    return any(isinstance(m, QuickGELU) for m in visual.modules())


def mlp_ratio(intermediate: int, width: int) -> float:
    """open_clip sizes the MLP as int(width * ratio): make sure that lands exactly on `intermediate`."""
    ratio = intermediate / width
    return ratio if int(width * ratio) == intermediate else (intermediate + 0.5) / width


def probe_output_dim(visual: nn.Module, size: int) -> int:
    out_dim = getattr(visual, "output_dim", None)
    if isinstance(out_dim, int):
        return out_dim
    with torch.no_grad():
        return int(visual(torch.zeros(1, 3, size, size)).shape[-1])


def vit_kwargs_from_open_clip(visual: nn.Module, config: StyleIDConfig) -> dict[str, Any]:
    """ViT settings of an open_clip CLIP tower (what export to transformers needs)."""
    if not isinstance(visual, VisionTransformer) or getattr(visual, "attn_pool", None) is not None:
        raise StyleIDError(f"export to transformers supports CLIP ViT backbones only, not {config.source or type(visual).__name__}")
    block = visual.transformer.resblocks[0]
    width = visual.transformer.width
    return {
        "image_size": config.image_size,
        "patch_size": visual.patch_size[0],
        "width": width,
        "layers": visual.transformer.layers,
        "heads": block.attn.num_heads,
        "mlp_ratio": block.mlp.c_fc.out_features / width,
        "output_dim": config.embedding_dim,
        "act": "quick_gelu" if uses_quick_gelu(visual) else "gelu",
        "layer_norm_eps": visual.ln_pre.eps,
    }
