"""StyleID guidance: a style-robust face identity encoder and identity losses for stylization."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "StyleIDEncoder": "encoder.model",
    "StyleIDConfig": "encoder.config",
    "LoraSettings": "encoder.config",
    "IdentityLoss": "identity_losses",
    "StyleIDLoss": "identity_losses",
    "ArcFaceLoss": "identity_losses",
    "CLIPLoss": "identity_losses",
    "build_identity_loss": "identity_losses",
    "PeopleIdentityLoss": "people_loss",
    "StyleIDError": "errors",
    "NoFaceError": "errors",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)


if TYPE_CHECKING:
    from .encoder.config import LoraSettings, StyleIDConfig
    from .encoder.model import StyleIDEncoder
    from .errors import NoFaceError, StyleIDError
    from .identity_losses import ArcFaceLoss, CLIPLoss, IdentityLoss, StyleIDLoss, build_identity_loss
    from .people_loss import PeopleIdentityLoss
