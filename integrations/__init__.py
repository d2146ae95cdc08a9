"""Adapters that plug the StyleID identity losses into generation frameworks (diffusers sampling)."""
from __future__ import annotations

from typing import TYPE_CHECKING

_EXPORTS = {
    "IdentityGuidanceCallback": "diffusers",
    "prepare_guidance_kwargs": "diffusers",
    "SUPPORTED_SCHEDULERS": "diffusers",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    # lazy: importing `integrations` must not pull in diffusers
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if TYPE_CHECKING:
    from .diffusers import SUPPORTED_SCHEDULERS, IdentityGuidanceCallback, prepare_guidance_kwargs
