"""The IMAGE edge: ComfyUI's IMAGE is float [B,H,W,C] in 0..1, this toolkit's tensors are [B,3,H,W].

Every node converts here, at its edge, and nowhere else; a malformed input becomes one sentence naming the
input, never a traceback from deep inside a model.
"""
from __future__ import annotations

import math

import torch

from styleid_guidance.errors import StyleIDError


def image_to_bchw(image: object, name: str, allow_empty: bool = False) -> torch.Tensor:
    """ComfyUI IMAGE [B,H,W,C] (C = 1, 3 or 4) → float32 [B,3,H,W] in 0..1 (alpha dropped, grey repeated)."""
    if not isinstance(image, torch.Tensor):
        raise StyleIDError(f"{name}: expected an IMAGE tensor, got {type(image).__name__}")
    if image.ndim != 4:
        raise StyleIDError(f"{name}: IMAGE must have 4 dimensions [batch, height, width, channels], got shape {tuple(image.shape)}")
    if image.shape[0] == 0 and not allow_empty:
        raise StyleIDError(f"{name}: the image batch is empty; connect at least one image")
    if image.shape[-1] not in (1, 3, 4):
        raise StyleIDError(f"{name}: IMAGE must have 1, 3 or 4 channels last, got shape {tuple(image.shape)}")
    # a clone outside inference mode: ComfyUI runs nodes under torch.inference_mode(), and these pixels may
    # later take part in autograd (guidance, JoJoGAN), which refuses inference tensors
    with torch.inference_mode(False):
        x = image.detach().clone().float()
        if x.numel() and not torch.isfinite(x).all():
            raise StyleIDError(f"{name}: the image contains NaN or inf values")
        x = x[..., :3] if x.shape[-1] >= 3 else x.repeat(1, 1, 1, 3)
        return x.permute(0, 3, 1, 2).clamp(0.0, 1.0).contiguous()


def reference_photos(reference: object, more: dict[str, object] | None = None) -> list[torch.Tensor]:
    """The photos of the person as [1,3,H,W] tensors: the `reference` batch, then each extra reference slot (ComfyUI's
    Autogrow dict {"reference_0": IMAGE, ...}, in slot order), whose photos may all differ in size."""
    photos = list(image_to_bchw(reference, "reference").split(1))
    for name in sorted(more or {}, key=lambda n: (len(n), n)):  # reference_2 before reference_10
        if more[name] is not None:
            photos += list(image_to_bchw(more[name], f"more_references {name}").split(1))
    return photos


def bchw_to_image(x: torch.Tensor) -> torch.Tensor:
    """[B,3,H,W] in 0..1 → ComfyUI IMAGE [B,H,W,3], float32 on the CPU."""
    return x.detach().float().clamp(0.0, 1.0).permute(0, 2, 3, 1).contiguous().cpu()


def empty_image(height: int = 64, width: int = 64) -> torch.Tensor:
    """An IMAGE with zero images: what a gate returns when nothing passes (downstream nodes see an empty
    batch instead of the workflow aborting)."""
    return torch.zeros((0, max(1, height), max(1, width), 3), dtype=torch.float32)


def check_finite(value: float, name: str) -> float:
    """A widget number that must be finite (NaN sneaks in through the API and through other nodes)."""
    value = float(value)
    if not math.isfinite(value):
        raise StyleIDError(f"{name} must be a finite number, got {value}")
    return value
