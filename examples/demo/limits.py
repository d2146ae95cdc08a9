"""What the demo accepts from a browser: file size, image dimensions, number of images.

Every upload reaches a tab as a plain file path (`gr.File`, never `gr.Image`, whose own preprocessing
decodes the file before our code runs and answers a broken or huge one with Gradio's raw "Could not
preprocess input component…" and the server's temp paths). It is read here first, so an oversized,
tiny, empty or broken image ends as one plain sentence in the UI that names the file, never its path.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from styleid_guidance.errors import StyleIDError
from styleid_guidance.files.images import load_image

THUMBNAIL_SIDE = 256


@dataclass(frozen=True)
class Limits:
    max_upload_mb: float = 10.0
    max_side: int = 4096  # px; larger photos gain nothing at 224/112-px model inputs and cost seconds to decode
    min_side: int = 32
    max_verify_images: int = 8
    # Gradio's own cap (`launch(max_file_size=...)`) sits above ours: Gradio refuses a whole multi-file
    # selection when one file is over its cap, while open_image drops just that file and names it.
    transport_factor: float = 5.0

    @property
    def max_file_size(self) -> str:
        """For `Blocks.launch(max_file_size=...)`: the hard cap on what reaches the server at all."""
        return f"{self.max_upload_mb * self.transport_factor:g}mb"


def display_name(path: str | os.PathLike) -> str:
    """The uploaded file's own name (Gradio keeps it as the last path component of its temp copy)."""
    return Path(path).name


def without_paths(text: str, path: Path) -> str:
    """A library message with the server-side location of the upload taken out (names only)."""
    for location in (str(path), str(path.parent), str(path.resolve().parent)):
        if location not in ("", "."):
            text = text.replace(location + os.sep, "").replace(location, path.name)
    return text


def open_image(path: str | os.PathLike | None, what: str, limits: Limits) -> Image.Image:
    """Read an uploaded image as RGB after checking size and dimensions (header only, before decoding)."""
    if path is None or str(path) == "":
        raise StyleIDError(f"{what}: no image uploaded; drop a PNG/JPEG/WebP file on the {what} box")
    path = Path(path)
    name = display_name(path)
    if not path.is_file():
        raise StyleIDError(f"{what} ({name}): the upload is gone; upload the image again")
    size_bytes = path.stat().st_size
    if size_bytes == 0:
        raise StyleIDError(f"{what} ({name}): the file is empty; upload a PNG, JPEG or WebP image")
    size_mb = size_bytes / 2**20
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
        detail = without_paths(str(err).split(": ", 1)[-1], path)
        raise StyleIDError(f"{what} ({name}): {detail}") from None
    except Exception as err:  # a decoder bug on a crafted file: still one sentence, no path
        raise StyleIDError(f"{what} ({name}): not a readable image ({type(err).__name__}); upload a PNG, JPEG or WebP file") from None


def thumbnail(image: Image.Image, side: int = THUMBNAIL_SIDE) -> Image.Image:
    """A small copy for the page's previews (what the server read, not what the browser shows)."""
    small = image.copy()
    small.thumbnail((side, side), Image.Resampling.LANCZOS)
    return small
