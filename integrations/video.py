"""Identity guidance on video latents [B, C, F, h, w]: which latent frames a step decodes, and how.

Decoding the whole clip at every step would cost a full VAE forward and backward per step, so each guided step
decodes only `frames_per_step` latent frames, spread over the clip and rotating from step to step.

Two kinds of video VAE:
- per-frame (AnimateDiff's SD VAE, or any 2-D guidance decoder such as `AutoencoderTiny`): each latent frame
  is one image, decoded on its own — exact.
- causal and temporally compressed (Wan's `AutoencoderKLWan`, 4x in time): latent frame 0 decodes to pixel
  frame 0 and frame f ≥ 1 to pixel frames 4f−3 … 4f, through a causal cache fed by every earlier latent frame.
  With `temporal_context=None` (exact) the VAE's own causal cache is walked from frame 0 up to the last selected
  frame: the frames in between run forward only (no graph, no stored activations) and only the selected ones
  keep a graph, so the decoded pixels are exactly the pipeline's and the backward pass costs only the selected
  frames. With `temporal_context=n` each selected frame is decoded behind its n previous latent frames only
  (windows of equal length share one batched decode): a bounded cost wherever the frame is, but approximate.
  `benchmarks/video_guidance.py` measures both.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from styleid_guidance.errors import StyleIDError

from .defaults import is_causal_video_vae
from .latents import decode_latents


def frame_order(num_frames: int) -> list[int]:
    """A visiting order of 0 … F−1 whose consecutive runs are spread over the clip: i·s mod F with s ≈ F/φ²
    coprime to F (the golden-ratio stride), so any window of k consecutive entries holds k far-apart frames."""
    if num_frames <= 2:
        return list(range(num_frames))
    stride = max(1, round(num_frames * (3 - math.sqrt(5)) / 2))
    while math.gcd(stride, num_frames) != 1:
        stride += 1
    return [(i * stride) % num_frames for i in range(num_frames)]


def frames_for_step(num_frames: int, per_step: int | None, guided_step: int) -> list[int]:
    """The latent frames the `guided_step`-th guided step decodes (sorted). Consecutive guided steps take
    consecutive windows of `frame_order`, so every frame is guided once within ceil(F / per_step) guided steps.
    None, or per_step ≥ F: every frame."""
    if per_step is None or per_step >= num_frames:
        return list(range(num_frames))
    order = frame_order(num_frames)
    start = guided_step * per_step
    return sorted({order[(start + j) % num_frames] for j in range(per_step)})


def _temporal_ratio(decoder: nn.Module) -> int:
    return 2 ** sum(bool(d) for d in decoder.config.temperal_downsample)


def _wan_denormalize(decoder: nn.Module, latents: torch.Tensor) -> torch.Tensor:
    """The pipelines' `latents / (1 / latents_std) + latents_mean`: pipeline space → the VAE's own latent space."""
    cfg = decoder.config
    shape = (1, cfg.z_dim, 1, 1, 1)
    mean = torch.tensor(cfg.latents_mean, dtype=latents.dtype, device=latents.device).view(shape)
    std = torch.tensor(cfg.latents_std, dtype=latents.dtype, device=latents.device).view(shape)
    return latents * std + mean


def _pixel_slice(first: int, frame: int, ratio: int) -> slice:
    """Where latent `frame` lands in the decode of a window starting at latent `first` (a window's first latent
    frame decodes to one pixel frame, each later one to `ratio`)."""
    if frame == first:
        return slice(0, 1)
    end = 1 + (frame - first) * ratio
    return slice(end - ratio, end)


def _walks_its_cache(decoder: nn.Module) -> bool:
    """Whether this diffusers version's Wan VAE exposes the per-frame causal decode the exact mode walks."""
    return all(hasattr(decoder, name) for name in ("clear_cache", "post_quant_conv", "decoder")) and not getattr(decoder, "use_tiling", False)


def _decode_cached(decoder: nn.Module, z: torch.Tensor, frames: list[int]) -> list[torch.Tensor]:
    """The VAE's causal decode, one latent frame at a time through its feature cache, as `AutoencoderKLWan.decode`
    runs it; frames that are not selected run without a graph (their cache entries still feed the later ones)."""
    from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

    wanted = set(frames)
    grad = torch.is_grad_enabled()
    patch = decoder.config.patch_size
    out: dict[int, torch.Tensor] = {}
    decoder.clear_cache()
    try:
        x = decoder.post_quant_conv(z[:, :, : max(frames) + 1])
        for i in range(max(frames) + 1):
            decoder._conv_idx = [0]
            with torch.set_grad_enabled(grad and i in wanted):
                piece = decoder.decoder(x[:, :, i: i + 1], feat_cache=decoder._feat_map, feat_idx=decoder._conv_idx,
                                        first_chunk=i == 0)
            if i in wanted:
                piece = unpatchify(piece, patch_size=patch) if patch is not None else piece
                out[i] = piece.float().clamp(-1.0, 1.0)
    finally:
        decoder.clear_cache()  # the cache holds this call's tensors (and graph): release them
    return [out[f] for f in frames]


def _decode_causal(decoder: nn.Module, z: torch.Tensor, frames: list[int], context: int | None) -> list[torch.Tensor]:
    """Pixel frames [B, 3, n_f, H, W] in [-1, 1] of each selected latent frame, differentiable."""
    ratio = _temporal_ratio(decoder)
    dtype = next(decoder.parameters()).dtype
    if context is None:
        if _walks_its_cache(decoder):
            return _decode_cached(decoder, z.to(dtype), frames)
        video = decoder.decode(z[:, :, : max(frames) + 1].to(dtype), return_dict=False)[0].float()  # the prefix, whole
        return [video[:, :, _pixel_slice(0, f, ratio)] for f in frames]
    starts = {f: max(0, f - context) for f in frames}
    out: dict[int, torch.Tensor] = {}
    for length in sorted({f - s + 1 for f, s in starts.items()}):
        group = [f for f in frames if f - starts[f] + 1 == length]
        windows = torch.cat([z[:, :, starts[f]: f + 1] for f in group])  # same length: one batched decode
        video = decoder.decode(windows.to(dtype), return_dict=False)[0].float()
        for piece, f in zip(video.chunk(len(group)), group):
            out[f] = piece[:, :, _pixel_slice(starts[f], f, ratio)]
    return [out[f] for f in frames]


def decode_video_frames(decoder: nn.Module, latents: torch.Tensor, frames: list[int], context: int | None = None,
                        fp32_copies: dict[int, nn.Module] | None = None) -> torch.Tensor:
    """Pipeline-space video latents [B, C, F, h, w] (fp32) → the images of the selected latent frames,
    [B, N, 3, H, W] in [0, 1], fp32, differentiable. N = len(frames) for a per-frame decoder; for a causal
    VAE each latent frame brings the pixel frames it decodes to (1 for a window's first frame, else 4)."""
    if latents.ndim != 5:
        raise StyleIDError(f"video latents must be [B, C, F, h, w], got shape {tuple(latents.shape)}")
    b, c, f, h, w = latents.shape
    if not frames or min(frames) < 0 or max(frames) >= f:
        raise StyleIDError(f"frames {frames} are not latent frames of a {f}-frame clip")
    if is_causal_video_vae(decoder):
        pieces = _decode_causal(decoder, _wan_denormalize(decoder, latents), frames, context)
        video = torch.cat(pieces, dim=2)  # [B, 3, N, H, W]
        return (video / 2 + 0.5).clamp(0, 1).permute(0, 2, 1, 3, 4)
    picked = latents[:, :, frames].permute(0, 2, 1, 3, 4).reshape(b * len(frames), c, h, w)
    images = decode_latents(decoder, picked, fp32_copies)
    return images.view(b, len(frames), *images.shape[1:])


def normalize_frames(step: torch.Tensor, frames: list[int]) -> torch.Tensor:
    """Scale each sample's latent step so its RMS over the guided frames is 1: a guided frame moves as far as a
    guided image does at the same `scale`, however few of the clip's frames a step decodes."""
    rms = step[:, :, frames].pow(2).mean(dim=(1, 2, 3, 4), keepdim=True).sqrt().clamp_min(1e-12)
    return step / rms
