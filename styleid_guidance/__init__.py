"""StyleID guidance: a style-robust face identity encoder and identity losses for stylization."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "StyleIDEncoder": "encoder",
    "StyleIDConfig": "config",
    "LoraSettings": "config",
    "IdentityLoss": "identity",
    "StyleIDLoss": "identity",
    "ArcFaceLoss": "identity",
    "CLIPLoss": "identity",
    "build_identity_loss": "identity",
    "StyleIDError": "errors",
    "NoFaceError": "errors",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)


if TYPE_CHECKING:
    from .config import LoraSettings, StyleIDConfig
    from .encoder import StyleIDEncoder
    from .errors import NoFaceError, StyleIDError
    from .identity import ArcFaceLoss, CLIPLoss, IdentityLoss, StyleIDLoss, build_identity_loss
