"""JoJoGAN one-shot face stylization with a pluggable identity loss (StyleID, ArcFace or none).

Models load the public checkpoints unchanged: rosinality StyleGAN2 (`stylegan2-ffhq-config-f.pt`),
JoJoGAN style checkpoints and e4e (`e4e_ffhq_encode.pt`). See `jojogan.api.JoJoGAN`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

_EXPORTS = {
    "JoJoGAN": "api",
    "Generator": "stylegan2",
    "Discriminator": "stylegan2",
    "Encoder4Editing": "e4e",
    "E4EInverter": "e4e",
    "FinetuneConfig": "train",
    "finetune": "train",
    "align_face": "align",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if TYPE_CHECKING:
    from .align import align_face
    from .api import JoJoGAN
    from .e4e import E4EInverter, Encoder4Editing
    from .stylegan2 import Discriminator, Generator
    from .train import FinetuneConfig, finetune
