"""Self-attention with its projections as real `nn.Linear` layers, for LoRA.

`nn.MultiheadAttention` keeps q/k/v as a bare Parameter and calls `out_proj` through
`F.multi_head_attention_forward`, so LoRA can only reach it by merging ΔW into the frozen weights
before each forward and subtracting it after — which moves the "frozen" weights by rounding error
on every call. With the projections as linear layers, LoRA adds x·A·B on the side: exact, and no
per-call merge.
"""
from __future__ import annotations

import re

import torch
import torch.nn as nn
import torch.nn.functional as F


class SplitProjectionAttention(nn.Module):
    """Drop-in for a self-attention `nn.MultiheadAttention` (same weights, shared Parameters)."""

    def __init__(self, mha: nn.MultiheadAttention):
        super().__init__()
        if not mha._qkv_same_embed_dim:
            raise ValueError("only self-attention with equal q/k/v dimensions can be converted")
        embed_dim = mha.embed_dim
        self.num_heads = mha.num_heads
        self.batch_first = mha.batch_first
        self.dropout = mha.dropout
        self.in_proj = nn.Linear(embed_dim, 3 * embed_dim, bias=mha.in_proj_bias is not None, device=mha.in_proj_weight.device, dtype=mha.in_proj_weight.dtype)
        self.in_proj.weight = mha.in_proj_weight
        if mha.in_proj_bias is not None:
            self.in_proj.bias = mha.in_proj_bias
        self.out_proj = mha.out_proj

    def forward(self, query: torch.Tensor, key: torch.Tensor | None = None, value: torch.Tensor | None = None,
                need_weights: bool = False, attn_mask: torch.Tensor | None = None, **_: object) -> tuple[torch.Tensor, None]:
        x = query if self.batch_first else query.transpose(0, 1)
        b, n, e = x.shape
        q, k, v = self.in_proj(x).view(b, n, 3, self.num_heads, e // self.num_heads).permute(2, 0, 3, 1, 4)
        if attn_mask is not None and attn_mask.dtype != torch.bool:
            attn_mask = attn_mask.to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0)
        out = self.out_proj(out.transpose(1, 2).reshape(b, n, e))
        return (out if self.batch_first else out.transpose(0, 1)), None


def split_attention_projections(module: nn.Module) -> nn.Module:
    """Replace every nn.MultiheadAttention inside `module` (in place) and return it."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.MultiheadAttention):
            setattr(module, name, SplitProjectionAttention(child))
        else:
            split_attention_projections(child)
    return module


_SPLIT = re.compile(r"\.attn\.in_proj\.(weight|bias)$")
_FUSED = re.compile(r"\.attn\.in_proj_(weight|bias)$")


def to_fused_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """State-dict names of split attention → open_clip's `attn.in_proj_weight` layout."""
    return {_SPLIT.sub(r".attn.in_proj_\1", k): v for k, v in state.items()}


def to_split_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {_FUSED.sub(r".attn.in_proj.\1", k): v for k, v in state.items()}
