"""Weight-layout conversion between transformers' CLIP vision tower and open_clip's VisionTransformer.

The released StyleID checkpoint is a transformers `CLIPModel`; the encoder runs on open_clip. The two
layouts differ only in names and in open_clip's fused q/k/v projection and transposed visual `proj`.
"""
from __future__ import annotations

import re

import torch

_BLOCK_RENAMES = {
    "self_attn.out_proj": "attn.out_proj",
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}
_TOP_RENAMES = {
    "vision_model.embeddings.class_embedding": "class_embedding",
    "vision_model.embeddings.patch_embedding.weight": "conv1.weight",
    "vision_model.embeddings.position_embedding.weight": "positional_embedding",
    "vision_model.pre_layrnorm.weight": "ln_pre.weight",
    "vision_model.pre_layrnorm.bias": "ln_pre.bias",
    "vision_model.post_layernorm.weight": "ln_post.weight",
    "vision_model.post_layernorm.bias": "ln_post.bias",
}
_IGNORED_HF = re.compile(r"^vision_model\.embeddings\.position_ids$")
_HF_LAYER = re.compile(r"^vision_model\.encoder\.layers\.(\d+)\.(.+)$")


def hf_vision_to_open_clip(hf: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Map `vision_model.*` + `visual_projection.weight` keys to open_clip VisionTransformer keys.

    Returns the converted state dict and the HF keys that had no place (for a clear error).
    """
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    unused: list[str] = []
    for key, value in hf.items():
        if _IGNORED_HF.match(key):
            continue
        if key in _TOP_RENAMES:
            out[_TOP_RENAMES[key]] = value
        elif key == "visual_projection.weight":
            out["proj"] = value.t().contiguous()
        elif m := _HF_LAYER.match(key):
            layer, rest = int(m.group(1)), m.group(2)
            if q := re.match(r"self_attn\.([qkv])_proj\.(weight|bias)$", rest):
                qkv.setdefault((layer, q.group(2)), {})[q.group(1)] = value
                continue
            for hf_name, oc_name in _BLOCK_RENAMES.items():
                if rest.startswith(hf_name + "."):
                    out[f"transformer.resblocks.{layer}.{oc_name}{rest[len(hf_name):]}"] = value
                    break
            else:
                unused.append(key)
        else:
            unused.append(key)
    for (layer, kind), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            missing = sorted({"q", "k", "v"} - set(parts))
            unused.append(f"vision_model.encoder.layers.{layer}.self_attn.{missing[0]}_proj.{kind} (missing)")
            continue
        out[f"transformer.resblocks.{layer}.attn.in_proj_{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], 0)
    return out, unused


def open_clip_to_hf_vision(oc: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of `hf_vision_to_open_clip` (for `export_transformers`)."""
    top = {v: k for k, v in _TOP_RENAMES.items()}
    block = {v: k for k, v in _BLOCK_RENAMES.items()}
    out: dict[str, torch.Tensor] = {}
    for key, value in oc.items():
        if key in top:
            out[top[key]] = value
        elif key == "proj":
            out["visual_projection.weight"] = value.t().contiguous()
        elif m := re.match(r"^transformer\.resblocks\.(\d+)\.(.+)$", key):
            layer, rest = m.group(1), m.group(2)
            prefix = f"vision_model.encoder.layers.{layer}."
            if f := re.match(r"attn\.in_proj_(weight|bias)$", rest):
                for name, chunk in zip("qkv", value.chunk(3, dim=0)):
                    out[f"{prefix}self_attn.{name}_proj.{f.group(1)}"] = chunk.contiguous()
                continue
            for oc_name, hf_name in block.items():
                if rest.startswith(oc_name + "."):
                    out[prefix + hf_name + rest[len(oc_name):]] = value
                    break
            else:
                raise KeyError(f"no transformers name for open_clip key {key!r}")
        else:
            raise KeyError(f"no transformers name for open_clip key {key!r}")
    return out
