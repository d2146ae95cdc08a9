"""Upload checks of the demo: every bad image ends in one sentence that names it and says what to do."""
from __future__ import annotations

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
])
def test_bad_uploads_get_one_clear_line(tmp_path, make, limits, expected):
    with pytest.raises(StyleIDError) as info:
        open_image(make(tmp_path), "face photo", limits)
    message = str(info.value)
    assert expected in message and message.startswith("face photo"), message
    assert "\n" not in message


def test_limits_feed_gradio():
    assert Limits(max_upload_mb=7.5).max_file_size == "7.5mb"
