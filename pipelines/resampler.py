"""The identity Resampler of InstantID and InfiniteYou, on diffusers' own Perceiver resampler.

Both projects turn one 512-d face embedding into a few cross-attention tokens with the IP-Adapter-Plus
Perceiver resampler (hidden 1280, depth 4, 20 heads of 64, FFN x4): InstantID 16 tokens of 2048 (SDXL
cross-attention width), InfiniteYou 8 tokens of 4096 (FLUX text width). diffusers already ships that network as
`IPAdapterPlusImageProjection`; this module only maps the upstream checkpoint key names onto it, both ways, so
the official `ip-adapter.bin` / `image_proj_model.bin` load unchanged and tiny test files can be written in the
real layout.

Upstream names (`Resampler` in the InstantID/InfiniteYou repos) → diffusers names:
  latents, proj_in, proj_out, norm_out               → unchanged
  layers.i.0.norm1 / norm2                           → layers.i.ln0 / ln1
  layers.i.0.to_q / to_out                           → layers.i.attn.to_q / attn.to_out.0
  layers.i.0.to_kv (k and v stacked on dim 0)        → layers.i.attn.to_k + attn.to_v
  layers.i.1.0 / 1.1 / 1.3 (LayerNorm, fc1, fc2)     → layers.i.ff.0 / ff.1.net.0.proj / ff.1.net.2
"""
from __future__ import annotations

import re

import torch
from diffusers.models.embeddings import IPAdapterPlusImageProjection

from styleid_guidance.errors import StyleIDError

UPSTREAM_DIM_HEAD = 64

_RENAMES = [  # (upstream suffix inside layers.i, diffusers suffix)
    ("0.norm1.", "ln0."),
    ("0.norm2.", "ln1."),
    ("0.to_q.", "attn.to_q."),
    ("0.to_out.", "attn.to_out.0."),
    ("1.0.", "ff.0."),
    ("1.1.", "ff.1.net.0.proj."),
    ("1.3.", "ff.1.net.2."),
]
_LAYER = re.compile(r"^layers\.(\d+)\.(.*)$")


def build_resampler(
    embed_dim: int = 512,
    output_dim: int = 2048,
    num_queries: int = 16,
    hidden_dim: int = 1280,
    depth: int = 4,
    heads: int = 20,
) -> IPAdapterPlusImageProjection:
    """A randomly initialised identity Resampler (upstream defaults: InstantID's 16 × 2048 tokens)."""
    return IPAdapterPlusImageProjection(
        embed_dims=embed_dim,
        output_dims=output_dim,
        hidden_dims=hidden_dim,
        depth=depth,
        dim_head=hidden_dim // heads,
        heads=heads,
        num_queries=num_queries,
    )


def resampler_from_upstream(state_dict: dict[str, torch.Tensor], source: str = "image_proj") -> IPAdapterPlusImageProjection:
    """Build the Resampler whose shape the upstream `state_dict` implies and load it (strict)."""
    required = ("latents", "proj_in.weight", "proj_out.weight", "layers.0.0.to_q.weight")
    missing = [k for k in required if k not in state_dict]
    if missing:
        raise StyleIDError(
            f"{source}: not an InstantID/InfiniteYou Resampler state dict (missing {', '.join(missing)}); "
            "pass the official ip-adapter.bin / image_proj_model.bin"
        )
    _, num_queries, hidden_dim = state_dict["latents"].shape
    depth = 1 + max(int(m.group(1)) for k in state_dict if (m := _LAYER.match(k)))
    inner = state_dict["layers.0.0.to_q.weight"].shape[0]
    with torch.random.fork_rng(devices=[]):  # the random init is replaced by the checkpoint: leave the caller's RNG alone
        model = IPAdapterPlusImageProjection(
            embed_dims=state_dict["proj_in.weight"].shape[1],
            output_dims=state_dict["proj_out.weight"].shape[0],
            hidden_dims=hidden_dim,
            depth=depth,
            dim_head=UPSTREAM_DIM_HEAD if inner >= UPSTREAM_DIM_HEAD else inner,
            heads=max(inner // UPSTREAM_DIM_HEAD, 1),
            num_queries=num_queries,
        )
    result = model.load_state_dict(upstream_to_diffusers(state_dict), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise StyleIDError(
            f"{source}: Resampler weights do not match the upstream layout "
            f"(missing {result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]})"
        )
    return model.eval()


def upstream_to_diffusers(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state_dict.items():
        m = _LAYER.match(key)
        if m is None:
            out[key] = value
            continue
        i, rest = m.groups()
        if rest.startswith("0.to_kv."):
            k, v = value.chunk(2, dim=0)
            suffix = rest[len("0.to_kv."):]
            out[f"layers.{i}.attn.to_k.{suffix}"] = k
            out[f"layers.{i}.attn.to_v.{suffix}"] = v
            continue
        for old, new in _RENAMES:
            if rest.startswith(old):
                rest = new + rest[len(old):]
                break
        out[f"layers.{i}.{rest}"] = value
    return out


def diffusers_to_upstream(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of `upstream_to_diffusers` (writes files in the official layout)."""
    out, pending_k = {}, {}
    for key, value in state_dict.items():
        m = _LAYER.match(key)
        if m is None:
            out[key] = value
            continue
        i, rest = m.groups()
        if rest.startswith("attn.to_k."):
            pending_k[(i, rest[len("attn.to_k."):])] = value
            continue
        if rest.startswith("attn.to_v."):
            suffix = rest[len("attn.to_v."):]
            out[f"layers.{i}.0.to_kv.{suffix}"] = torch.cat([pending_k.pop((i, suffix)), value], dim=0)
            continue
        for old, new in _RENAMES:
            if rest.startswith(new):
                rest = old + rest[len(new):]
                break
        out[f"layers.{i}.{rest}"] = value
    return out
