"""StyleID guidance: a style-robust face identity encoder and identity losses for stylization."""
from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

# Lazy exports keep `import styleid_guidance` cheap (CLI start-up, subprocess workers).
_EXPORTS = {
    "StyleIDEncoder": "encoder",
    "StyleIDConfig": "encoder",
    "LoraSettings": "encoder",
    "IdentityLoss": "identity",
    "StyleIDLoss": "identity",
    "ArcFaceLoss": "identity",
    "CLIPLoss": "identity",
    "build_identity_loss": "identity",
    "StyleIDError": "errors",
    "NoFaceError": "errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if TYPE_CHECKING:
    from .encoder import LoraSettings, StyleIDConfig, StyleIDEncoder
    from .errors import NoFaceError, StyleIDError
    from .identity import ArcFaceLoss, CLIPLoss, IdentityLoss, StyleIDLoss, build_identity_loss
