"""Adapters that plug the StyleID identity losses into generation frameworks (diffusers sampling)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from styleid_guidance.lazy import lazy_exports

_EXPORTS = {
    "IdentityGuidanceCallback": "diffusers",
    "prepare_guidance_kwargs": "diffusers",
    "SUPPORTED_SCHEDULERS": "diffusers",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)


if TYPE_CHECKING:
    from .diffusers import SUPPORTED_SCHEDULERS, IdentityGuidanceCallback, prepare_guidance_kwargs
