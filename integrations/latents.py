"""Latents → pixels for identity guidance: FLUX token unpacking and a differentiable decode.

The identity loss sees images in [0, 1]; guidance needs the gradient of that loss w.r.t. the latents, so the
decode here keeps the autograd graph (pipelines decode under no_grad and post-process to PIL/numpy).
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn

from styleid_guidance.errors import StyleIDError


def unpack_flux_latents(latents: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
    """FLUX's packed (B, h·w, 4C) tokens → (B, C, 2h, 2w) latents; grid_hw = (h, w) token grid."""
    b, n, c4 = latents.shape
    h, w = grid_hw
    if h * w != n:
        raise StyleIDError(f"packed latents have {n} tokens, not a {h}x{w} grid")
    x = latents.view(b, h, w, c4 // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, c4 // 4, 2 * h, 2 * w)


def flux_token_grid(latents: torch.Tensor, img_ids: torch.Tensor | None = None) -> tuple[int, int]:
    """The (h, w) token grid of packed latents: from the transformer's `img_ids` (rows hold (0, y, x)) when
    known, else the latents must be square — a packed tensor alone cannot tell 64x48 from 48x64.

    Only the first `latents.shape[1]` rows describe the generated tokens: FLUX.1 Kontext appends the reference
    image's ids (first coordinate 1, its own grid, possibly another size) after them."""
    if img_ids is not None:
        ids = img_ids[0] if img_ids.ndim == 3 else img_ids  # (B, N, 3) is diffusers' deprecated batched form
        ids = ids[: latents.shape[1]]
        return int(ids[:, 1].max()) + 1, int(ids[:, 2].max()) + 1
    side = int(round(latents.shape[1] ** 0.5))
    if side * side != latents.shape[1]:
        raise StyleIDError("cannot tell the image shape of these packed latents: call cb.attach(pipe) before sampling")
    return side, side


def decode_latents(decoder: nn.Module, latents: torch.Tensor, fp32_copies: dict[int, nn.Module] | None = None) -> torch.Tensor:
    """Pipeline-space latents (B, C, h, w), fp32 → images in [0, 1], fp32, differentiable.

    Undoes the decoder's `scaling_factor` / `shift_factor` as the pipelines do. A half-precision decoder that
    asks to be upcast (`force_upcast`, e.g. the SDXL VAE, which overflows in fp16) decodes through an fp32 copy,
    made once and kept in `fp32_copies` (keyed by the decoder's id) so later steps reuse it."""
    cfg = decoder.config
    z = latents / float(getattr(cfg, "scaling_factor", 1.0) or 1.0) + float(getattr(cfg, "shift_factor", None) or 0.0)
    dtype = next(decoder.parameters()).dtype
    if dtype == torch.float16 and getattr(cfg, "force_upcast", False):
        cache = fp32_copies if fp32_copies is not None else {}
        key = id(decoder)
        if key not in cache:
            cache[key] = copy.deepcopy(decoder).float().requires_grad_(False)
        decoder, dtype = cache[key], torch.float32
    image = decoder.decode(z.to(dtype), return_dict=False)[0].float()
    return (image / 2 + 0.5).clamp(0, 1)
