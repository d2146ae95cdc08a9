"""The ArcFace baseline: facexlib's IR-SE50, loaded CPU-safely (facexlib's own loader forces CUDA)."""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn

from ..errors import StyleIDError, reason
from ..files.safeload import load_weights_only
from ..hub.resolve import facexlib_weights_dir, offline

ARCFACE_FILE = "recognition_arcface_ir_se50.pth"
ARCFACE_URL = f"https://github.com/xinntao/facexlib/releases/download/v0.1.0/{ARCFACE_FILE}"


def build_arcface_backbone() -> nn.Module:
    """IR-SE50 with random weights (tests, benchmarks, or to load a state dict into)."""
    from facexlib.recognition.arcface_arch import Backbone

    return Backbone(num_layers=50, drop_ratio=0.6, mode="ir_se").eval()


def _weights_path(path_or_dir: str | os.PathLike | None, model_rootpath: str | None) -> Path:
    if path_or_dir is not None:
        p = Path(path_or_dir).expanduser()
        if p.is_dir():
            p = p / ARCFACE_FILE
        if not p.exists():
            raise StyleIDError(f"{p}: ArcFace weights not found; pass the path of {ARCFACE_FILE} or its folder")
        return p
    folder = facexlib_weights_dir(model_rootpath)
    p = folder / ARCFACE_FILE
    if p.exists():
        return p
    if offline():
        raise StyleIDError(f"ArcFace weights not found at {p} and downloads are off; put {ARCFACE_FILE} there or pass its path")
    try:
        from facexlib.utils import load_file_from_url

        return Path(load_file_from_url(ARCFACE_URL, model_dir="facexlib/weights", save_dir=str(folder)))
    except Exception as err:
        raise StyleIDError(f"could not download the ArcFace weights ({reason(err)}); put {ARCFACE_FILE} in {folder} "
                           "or pass its path") from None


def load_arcface_backbone(
    path_or_dir: str | os.PathLike | None = None,
    model_rootpath: str | None = None,
    device: torch.device | str | None = None,
) -> nn.Module:
    """facexlib's pretrained IR-SE50 from a file, a folder, facexlib's weights folder, or a download."""
    path = _weights_path(path_or_dir, model_rootpath)
    state = load_weights_only(path, "ArcFace checkpoint")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise StyleIDError(f"{path}: not an IR-SE50 ArcFace checkpoint (expected a state dict of tensors)")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    model = build_arcface_backbone()
    expected = set(model.state_dict())
    if set(state) != expected:
        missing = sorted(expected - set(state))
        extra = sorted(set(state) - expected)
        what = f"missing {missing[0]!r}" if missing else f"unexpected {extra[0]!r}"
        raise StyleIDError(f"{path}: not an IR-SE50 ArcFace checkpoint ({what})")
    model.load_state_dict(state, strict=True)
    return model.eval().to(device) if device is not None else model.eval()
