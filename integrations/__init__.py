"""Adapters that plug the StyleID identity losses into generation frameworks (diffusers sampling).

    from styleid_guidance.integrations import IdentityGuidanceCallback, prepare_guidance_kwargs

Modules, by concern: `callback` (IdentityGuidanceCallback), `composition` (prepare_guidance_kwargs),
`x0_estimate` (exact x0 recovery and the x0 → latents map per scheduler), `latents` (FLUX unpacking and the
differentiable decode), `video` (which latent frames of a clip a step decodes, and how), `defaults` (the default
step size per pipeline family), `hooks` (what `attach` installs on a pipeline), `reference_tokens` (FLUX.1 Kontext's
reference-image tokens, kept out of the guidance). The names below are imported on first
use, so `import styleid_guidance.integrations` does not load diffusers.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from styleid_guidance.lazy import lazy_exports

_EXPORTS = {
    "IdentityGuidanceCallback": "callback",
    "DEFAULT_SCALES": "defaults",
    "prepare_guidance_kwargs": "composition",
    "SUPPORTED_SCHEDULERS": "x0_estimate",
    "check_scheduler": "x0_estimate",
    "recover_x0": "x0_estimate",
    "x0_from_xt": "x0_estimate",
    "unpack_flux_latents": "latents",
    "decode_latents": "latents",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)


if TYPE_CHECKING:
    from .callback import IdentityGuidanceCallback
    from .defaults import DEFAULT_SCALES
    from .composition import prepare_guidance_kwargs
    from .latents import decode_latents, unpack_flux_latents
    from .x0_estimate import SUPPORTED_SCHEDULERS, check_scheduler, recover_x0, x0_from_xt
