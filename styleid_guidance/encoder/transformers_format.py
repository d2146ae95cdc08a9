"""The authors' sharing format: a transformers `CLIPModel` / `CLIPVisionModelWithProjection` folder.

Reading gives an open_clip ViT with identical embeddings to
`visual_projection(vision_model(x).pooler_output)`; writing merges LoRA and saves a
`CLIPVisionModelWithProjection` folder with its `preprocessor_config.json`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import save_file

from .attention import to_fused_names
from .backbones import mlp_ratio, vit_from_kwargs
from .config import OPENAI_MEAN, OPENAI_STD, LoraSettings, StyleIDConfig
from .clip_weights import hf_vision_to_open_clip, open_clip_to_hf_vision
from ..errors import StyleIDError
from ..files.safeload import read_json, read_weights

def _read_image_processor(folder: Path, default_size: int) -> tuple[tuple[float, ...], tuple[float, ...], int]:
    path = folder / "preprocessor_config.json"
    if not path.exists():
        return OPENAI_MEAN, OPENAI_STD, default_size
    cfg = read_json(path)
    crop = cfg.get("crop_size", default_size)
    size = crop.get("height", default_size) if isinstance(crop, dict) else int(crop)
    return tuple(cfg.get("image_mean", OPENAI_MEAN)), tuple(cfg.get("image_std", OPENAI_STD)), int(size)


def load_transformers_folder(folder: Path) -> tuple[nn.Module, StyleIDConfig, dict[str, torch.Tensor]]:
    """(ViT with random weights, its config, the open_clip-layout state dict to load into it)."""
    from transformers import CLIPConfig, CLIPVisionConfig

    raw = read_json(folder / "config.json")
    model_type = raw.get("model_type") if isinstance(raw, dict) else None
    if model_type == "clip":
        full = CLIPConfig.from_pretrained(str(folder))
        vcfg, proj_dim = full.vision_config, full.projection_dim
    elif model_type == "clip_vision_model":
        vcfg = CLIPVisionConfig.from_pretrained(str(folder))
        proj_dim = vcfg.projection_dim
    else:
        raise StyleIDError(f"{folder / 'config.json'}: model_type {model_type!r} is not a CLIP model (expected 'clip' or 'clip_vision_model')")
    if vcfg.hidden_act not in ("quick_gelu", "gelu"):
        raise StyleIDError(f"{folder}: unsupported hidden_act {vcfg.hidden_act!r} (quick_gelu or gelu)")
    vit = {
        "image_size": vcfg.image_size,
        "patch_size": vcfg.patch_size,
        "width": vcfg.hidden_size,
        "layers": vcfg.num_hidden_layers,
        "heads": vcfg.num_attention_heads,
        "mlp_ratio": mlp_ratio(vcfg.intermediate_size, vcfg.hidden_size),
        "output_dim": proj_dim,
        "act": vcfg.hidden_act,
        "layer_norm_eps": vcfg.layer_norm_eps,
    }
    hf_state = {k: v for k, v in read_weights(folder).items() if k.startswith(("vision_model.", "visual_projection."))}
    state, unused = hf_vision_to_open_clip(hf_state)
    if unused:
        raise StyleIDError(f"{folder}: checkpoint has unexpected vision keys, e.g. {unused[0]!r} ({len(unused)} in all)")
    mean, std, size = _read_image_processor(folder, vcfg.image_size)
    config = StyleIDConfig(backbone={"vit": vit}, image_size=size, embedding_dim=proj_dim, image_mean=mean, image_std=std,
                           lora=LoraSettings(lora_rank=0), source=f"transformers:{folder}")
    return vit_from_kwargs(vit), config, state


def write_transformers_folder(merged_visual: nn.Module, vit: dict[str, Any], config: StyleIDConfig, out: Path) -> Path:
    """Save a LoRA-merged open_clip ViT as a `CLIPVisionModelWithProjection` folder."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig

    state = {k: v.detach().cpu().contiguous() for k, v in to_fused_names(merged_visual.state_dict()).items()}
    vcfg = CLIPVisionConfig(
        hidden_size=vit["width"],
        intermediate_size=int(vit["width"] * vit["mlp_ratio"]),
        num_hidden_layers=vit["layers"],
        num_attention_heads=vit["heads"],
        image_size=vit["image_size"],
        patch_size=vit["patch_size"],
        hidden_act=vit.get("act", "quick_gelu"),
        layer_norm_eps=vit.get("layer_norm_eps", 1e-5),
        projection_dim=vit["output_dim"],
    )
    vcfg.architectures = ["CLIPVisionModelWithProjection"]
    out.mkdir(parents=True, exist_ok=True)
    vcfg.save_pretrained(str(out))
    save_file(open_clip_to_hf_vision(state), str(out / "model.safetensors"), metadata={"format": "pt"})
    size = config.image_size
    CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                       image_mean=list(config.image_mean), image_std=list(config.image_std)).save_pretrained(str(out))
    return out
