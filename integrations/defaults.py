"""The default guidance step size per pipeline family: the one place these numbers live.

`scale` is the RMS size of each x0-space correction (per guided frame, for video); the latents then move by
c·Δ, where c is how much of x0 the next latents hold: √ᾱ_prev for DDIM, 1 − σ_next for flow matching. Averaged
over the guided steps (the first 90 %), c is about 0.53 for SD1.5's DDIM (25–30 steps), 0.45 for AnimateDiff's
DDIM (linear betas, 25 steps) and only 0.21 for Wan's flow matching at shift 5 (0.28 at shift 3), because a large
shift keeps σ high for most of the run. The video defaults keep c·scale, the per-step latent movement, near the
still-image default's, so a frame moves about as far per guided step as an image does. Torch-free, so front ends
(the demo) read their defaults here without loading torch.
"""
from __future__ import annotations

from typing import Any

DEFAULT_SCALES: dict[str, float] = {
    "image": 0.05,  # SD1.5 / SDXL / FLUX stills (also any pipeline not recognised below)
    "animatediff": 0.06,  # 0.05 · 0.53 / 0.45: AnimateDiff's DDIM keeps less of x0 per step
    "wan": 0.12,  # 0.05 · 0.53 / 0.21: flow matching with Wan's large shift moves latents less per step
}


def is_causal_video_vae(decoder: Any) -> bool:
    """A temporally compressing causal video VAE (Wan 2.x's `AutoencoderKLWan`), as opposed to a 2-D decoder."""
    cfg = getattr(decoder, "config", None)
    return cfg is not None and hasattr(cfg, "temperal_downsample") and hasattr(cfg, "z_dim")


def guidance_family(pipe: Any) -> str:
    """The key of `DEFAULT_SCALES` for a diffusers pipeline: "wan" (a causal, temporally compressed video VAE),
    "animatediff" (a UNet with motion modules), else "image"."""
    vae = getattr(pipe, "vae", None)
    if vae is not None and is_causal_video_vae(vae):
        return "wan"
    if type(getattr(pipe, "unet", None)).__name__ == "UNetMotionModel":
        return "animatediff"
    return "image"


def default_scale(pipe: Any) -> float:
    """The documented default `scale` of `IdentityGuidanceCallback` on this pipeline."""
    return DEFAULT_SCALES[guidance_family(pipe)]
