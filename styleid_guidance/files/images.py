"""Loading and converting images: everything becomes RGB float in [0, 1], or a clear error."""
from __future__ import annotations

import logging
import os
import re
import warnings
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import StyleIDError, reason

log = logging.getLogger("styleid.images")
_exif_warned = False

ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray, torch.Tensor]

MIN_SIDE = 16  # below this no face model sees anything useful


def _describe(src: object) -> str:
    return str(src) if isinstance(src, (str, os.PathLike)) else type(src).__name__


def _array_to_uint8_rgb(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[-1] == 3:
        return arr
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
        raise StyleIDError(f"{name}: expected an HxW, HxWx3 or HxWx4 image array, got shape {tuple(arr.shape)}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise StyleIDError(f"{name}: the image contains NaN or inf values")
        scale = 1.0 if arr.max(initial=0.0) <= 1.0 else 255.0
        arr = np.clip(arr / scale, 0.0, 1.0)
    elif arr.dtype == np.uint16 or (np.issubdtype(arr.dtype, np.integer) and arr.max(initial=0) > 255):
        arr = arr.astype(np.float64) / 65535.0
    elif arr.dtype == np.bool_:
        arr = arr.astype(np.float64)
    else:
        arr = arr.astype(np.float64) / 255.0
    if arr.shape[-1] == 4:  # composite on white: transparent regions should not look like black hair
        alpha = arr[..., 3:4]
        arr = arr[..., :3] * alpha + (1.0 - alpha)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return np.round(arr * 255.0).astype(np.uint8)


def upright(image: Image.Image) -> Image.Image:
    """`image` turned by its EXIF orientation, as cameras mean it (phones store the pixels sideways plus a tag);
    diffusers' `load_image` does the same. Images without the tag come back as they are."""
    try:
        orientation = image.getexif().get(0x0112, 1)
        if orientation in (None, 1):
            return image
        return ImageOps.exif_transpose(image)
    except Exception as err:  # PIL's EXIF parsers raise nearly any type on a damaged block; the pixels are still good
        _exif_unreadable(image, err)
        return image


def _exif_unreadable(image: Image.Image, err: Exception) -> None:
    """Say once per process that EXIF could not be read (a folder of phone photos would repeat it per file)."""
    global _exif_warned
    if not _exif_warned:
        _exif_warned = True
        name = getattr(image, "filename", "") or "an image"
        log.warning("%s: unreadable EXIF (%s); using the pixels as stored, orientation not applied "
                    "(further EXIF errors are not reported)", name, reason(err))


def _too_many_pixels(path: Path, err: Exception) -> str:
    found = re.search(r"\((\d+) pixels\)", str(err))  # PIL names the size; reopening would trip the check again
    size = f"{int(found.group(1)) / 1e6:.0f} megapixels" if found else "too many pixels"
    return (f"{path}: image has {size}, over the {Image.MAX_IMAGE_PIXELS / 1e6:.0f} MP safety limit for "
            "decompression bombs; downscale it")


def load_image(src: ImageInput, min_side: int = MIN_SIDE) -> Image.Image:
    """Return an upright (EXIF orientation applied) RGB PIL image from a path, PIL image, numpy array or
    [3,H,W] tensor in [0,1]."""
    name = _describe(src)
    if isinstance(src, torch.Tensor):
        return to_pil(to_tensor(src)[0])
    if isinstance(src, (str, os.PathLike)):
        path = Path(src)
        if not path.exists():
            raise StyleIDError(f"{path}: no such file")
        if path.is_dir():
            raise StyleIDError(f"{path}: is a folder, expected an image file")
        try:
            with warnings.catch_warnings():
                # PIL only warns between its limit and twice it; a decompression bomb is refused at the limit
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as im:
                    im.load()
                    turned = upright(im)
                    src = turned.copy() if turned is im else turned
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise StyleIDError(_too_many_pixels(path, err)) from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as err:
            raise StyleIDError(f"{path}: not a readable image ({type(err).__name__}); pass a PNG/JPEG/WebP file") from None
    if isinstance(src, Image.Image):
        src = upright(src)
    if isinstance(src, Image.Image) and src.mode == "RGB":  # the common case: nothing to convert
        if min(src.size) < min_side:
            raise StyleIDError(f"{name}: image is {src.size[0]}x{src.size[1]} px, too small (need at least {min_side} px per side)")
        return src
    if isinstance(src, Image.Image):
        mode = src.mode
        if mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(src, dtype=np.uint32 if mode == "I" else np.uint16)
            if mode == "I":
                arr = arr.astype(np.float64) / max(float(arr.max(initial=1)), 1.0)
            src = np.asarray(arr)
        elif mode == "F":
            src = np.asarray(src, dtype=np.float32)
        elif mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in src.info):
            src = np.asarray(src.convert("RGBA"))
        else:
            src = np.asarray(src.convert("RGB"))
    if not isinstance(src, np.ndarray):
        raise StyleIDError(f"{name}: unsupported image type; pass a file path, PIL image, numpy array or tensor")
    rgb = _array_to_uint8_rgb(src, name)
    h, w = rgb.shape[:2]
    if min(h, w) < min_side:
        raise StyleIDError(f"{name}: image is {w}x{h} px, too small (need at least {min_side} px per side)")
    return Image.fromarray(rgb, "RGB")


def to_tensor(images: ImageInput | Sequence[ImageInput], device: torch.device | str | None = None) -> torch.Tensor:
    """Stack images into a float tensor [B,3,H,W] in [0,1]. Tensors pass through after validation."""
    if isinstance(images, torch.Tensor):
        x = images.unsqueeze(0) if images.ndim == 3 else images
        if x.ndim != 4 or x.shape[1] != 3:
            raise StyleIDError(f"image tensor must be [B,3,H,W] or [3,H,W], got {tuple(images.shape)}")
        if not x.is_floating_point():
            x = x.float() / 255.0
        if not torch.isfinite(x.detach()).all():
            raise StyleIDError("image tensor contains NaN or inf values")
        return x.to(device) if device is not None else x
    if not isinstance(images, (list, tuple)):
        images = [images]
    if len(images) == 0:
        raise StyleIDError("no images given")
    arrays = [np.asarray(load_image(im)) for im in images]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise StyleIDError(f"images have different sizes {sorted(shapes)}; embed them one by one or resize first")
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255.0)
    return x.to(device) if device is not None else x


def to_pil(x: torch.Tensor) -> Image.Image | list[Image.Image]:
    """[3,H,W] → PIL image; [B,3,H,W] → list of PIL images (values clamped to [0,1])."""
    if x.ndim == 4:
        return [to_pil(t) for t in x]  # type: ignore[misc]
    arr = (x.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255.0).round().astype(np.uint8)
    return Image.fromarray(arr, "RGB")


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def list_images(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Image files under a folder, sorted, by suffix."""
    folder = Path(folder)
    if not folder.is_dir():
        raise StyleIDError(f"{folder}: not a folder")
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
