"""JoJoGAN one-shot face stylization with a pluggable identity loss (StyleID, ArcFace or none).

Models load the public checkpoints unchanged: rosinality StyleGAN2 (`stylegan2-ffhq-config-f.pt`),
JoJoGAN style checkpoints and e4e (`e4e_ffhq_encode.pt`). See `styleid_guidance.jojogan.JoJoGAN`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from styleid_guidance.lazy import lazy_exports

_EXPORTS = {
    "JoJoGAN": "api",
    "Generator": "stylegan2",
    "Discriminator": "stylegan2",
    "Encoder4Editing": "e4e",
    "E4EInverter": "e4e",
    "FinetuneConfig": "finetune",
    "finetune": "finetune",
    "align_face": "align",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)


if TYPE_CHECKING:
    from .align import align_face
    from .api import JoJoGAN
    from .e4e import E4EInverter, Encoder4Editing
    from .stylegan2 import Discriminator, Generator
    from .finetune import FinetuneConfig, finetune
