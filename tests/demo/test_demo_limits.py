"""Upload checks of the demo: every bad image ends in one sentence that names it and says what to do."""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from styleid_guidance.demo.limits import Limits, open_image
from styleid_guidance.errors import StyleIDError


def _save(path, size, mode="RGB"):
    rng = np.random.default_rng(0)
    channels = {"RGB": 3, "RGBA": 4}[mode]
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], channels), dtype=np.uint8), mode).save(path)
    return path


def _huge_png(path):
    """A 20000 x 20000 PNG of 69 bytes: the header claims 400 MP, as a decompression bomb does."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))
    return path


def _truncated(path):
    _save(path, (128, 128))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def test_good_image_is_read_as_rgb(tmp_path):
    im = open_image(_save(tmp_path / "face.png", (80, 60), "RGBA"), "face photo", Limits())
    assert im.mode == "RGB" and im.size == (80, 60)


@pytest.mark.parametrize("make, limits, expected", [
    (lambda p: None, Limits(), "face photo: no image uploaded"),
    (lambda p: p / "gone.png", Limits(), "face photo (gone.png): the upload is gone"),
    (lambda p: (p / "notes.png").write_text("not an image") and p / "notes.png", Limits(),
     "face photo (notes.png): not a readable image"),
    (lambda p: _save(p / "wide.png", (300, 40)), Limits(max_side=256), "face photo (wide.png): 300x40 px is larger than the limit of 256 px"),
    (lambda p: _save(p / "small.png", (20, 64)), Limits(), "face photo (small.png): 20x64 px is too small"),
    (lambda p: _save(p / "heavy.png", (128, 128)), Limits(max_upload_mb=0.01), "KB is over the 0.01 MB upload limit"),
    (lambda p: (p / "empty.png").write_bytes(b"") or p / "empty.png", Limits(), "face photo (empty.png): the file is empty"),
    (lambda p: _huge_png(p / "huge.png"), Limits(), "face photo (huge.png): too many pixels; resize it to at most 4096 px"),
    (lambda p: _truncated(p / "cut.png"), Limits(), "face photo (cut.png): not a readable image"),
])
def test_bad_uploads_get_one_clear_line(tmp_path, make, limits, expected):
    with pytest.raises(StyleIDError) as info:
        open_image(make(tmp_path), "face photo", limits)
    message = str(info.value)
    assert expected in message and message.startswith("face photo"), message
    assert "\n" not in message and str(tmp_path) not in message  # the file's name, never where the server keeps it


def test_gradio_cap_sits_above_ours_so_one_big_file_costs_only_itself():
    # Gradio refuses a whole multi-file selection when one file is over its cap; ours names the file
    assert Limits(max_upload_mb=7.5).max_file_size == "37.5mb"
    assert Limits(max_upload_mb=10, transport_factor=1).max_file_size == "10mb"
