"""What the demo accepts from a browser: file size, image dimensions, number of images.

Gradio refuses uploads above `max_file_size` itself; everything reaching a tab is read here first, so
an oversized, tiny or broken image ends as one plain sentence in the UI, never as a traceback.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from styleid_guidance.errors import StyleIDError
from styleid_guidance.images import load_image


@dataclass(frozen=True)
class Limits:
    max_upload_mb: float = 10.0
    max_side: int = 4096  # px; larger photos gain nothing at 224/112-px model inputs and cost seconds to decode
    min_side: int = 32
    max_verify_images: int = 8

    @property
    def max_file_size(self) -> str:
        """For `Blocks.launch(max_file_size=...)`."""
        return f"{self.max_upload_mb:g}mb"


def display_name(path: str | os.PathLike) -> str:
    """The uploaded file's own name (Gradio keeps it as the last path component of its temp copy)."""
    return Path(path).name


def open_image(path: str | os.PathLike | None, what: str, limits: Limits) -> Image.Image:
    """Read an uploaded image as RGB after checking size and dimensions (header only, before decoding)."""
    if path is None or str(path) == "":
        raise StyleIDError(f"{what}: no image uploaded; drop a PNG/JPEG/WebP file on the {what} box")
    path = Path(path)
    name = display_name(path)
    if not path.is_file():
        raise StyleIDError(f"{what} ({name}): the upload is gone; upload the image again")
    size_mb = path.stat().st_size / 2**20
    if size_mb > limits.max_upload_mb:
        size = f"{size_mb:.1f} MB" if size_mb >= 1 else f"{size_mb * 1024:.0f} KB"
        raise StyleIDError(f"{what} ({name}): {size} is over the {limits.max_upload_mb:g} MB upload limit; use a smaller file")
    try:
        with Image.open(path) as im:  # reads the header only
            width, height = im.size
    except Image.DecompressionBombError:
        raise StyleIDError(f"{what} ({name}): too many pixels; resize it to at most {limits.max_side} px per side") from None
    except Exception:
        raise StyleIDError(f"{what} ({name}): not a readable image; upload a PNG, JPEG or WebP file") from None
    if max(width, height) > limits.max_side:
        raise StyleIDError(f"{what} ({name}): {width}x{height} px is larger than the limit of {limits.max_side} px per side; "
                           "resize it and upload again")
    if min(width, height) < limits.min_side:
        raise StyleIDError(f"{what} ({name}): {width}x{height} px is too small (at least {limits.min_side} px per side)")
    try:
        return load_image(path)
    except StyleIDError as err:
        raise StyleIDError(f"{what} ({name}): {str(err).split(': ', 1)[-1]}") from None
