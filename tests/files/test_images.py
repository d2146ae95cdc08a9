"""Image loading: every odd input becomes RGB in [0,1] or a one-line error naming the file."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from styleid_guidance.errors import StyleIDError
from styleid_guidance.files.atomic import atomic_write
from styleid_guidance.files.images import load_image, to_tensor


def test_grayscale_rgba_and_16bit_become_rgb(tmp_path):
    gray = Image.fromarray(np.full((40, 50), 128, np.uint8), "L")
    assert load_image(gray).mode == "RGB" and np.asarray(load_image(gray))[0, 0].tolist() == [128, 128, 128]
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:20, :, 3] = 255  # top half opaque red, bottom transparent → white
    out = np.asarray(load_image(Image.fromarray(rgba, "RGBA")))
    assert out[0, 0].tolist() == [255, 0, 0] and out[-1, -1].tolist() == [255, 255, 255]
    sixteen = np.full((40, 40), 65535 // 2, np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(sixteen).save(path)
    px = np.asarray(load_image(path))[0, 0]
    assert abs(int(px[0]) - 128) <= 1 and px[0] == px[1] == px[2]
    float_img = np.random.default_rng(0).random((30, 30, 3)).astype(np.float32)
    assert np.abs(np.asarray(load_image(float_img)) / 255.0 - float_img).max() < 1 / 255 + 1e-6


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing.png", "no such file"),
        (lambda p: (p / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage") and p / "bad.png", "not a readable image"),
        (lambda p: (p / "notes.txt").write_text("hello") and p / "notes.txt", "not a readable image"),
        (lambda p: p, "is a folder"),
    ],
)
def test_bad_files_name_the_file(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(StyleIDError, match=message) as err:
        load_image(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_tiny_and_non_finite_inputs_are_refused():
    with pytest.raises(StyleIDError, match="too small"):
        load_image(Image.new("RGB", (8, 8)))
    with pytest.raises(StyleIDError, match="NaN"):
        load_image(np.full((32, 32, 3), np.nan, np.float32))
    with pytest.raises(StyleIDError, match="NaN or inf"):
        to_tensor(torch.full((1, 3, 8, 8), float("inf")))
    with pytest.raises(StyleIDError, match=r"\[B,3,H,W\]"):
        to_tensor(torch.zeros(1, 4, 8, 8))
    with pytest.raises(StyleIDError, match="different sizes"):
        to_tensor([Image.new("RGB", (32, 32)), Image.new("RGB", (40, 32))])


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as tmp:
            tmp.write_text("half-written")
            raise RuntimeError("crash")
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]
    with atomic_write(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"


def _exif_jpeg(path, orientation):
    """A 60x30 JPEG stored sideways: red left half, blue right half, with an EXIF orientation tag."""
    pixels = np.zeros((30, 60, 3), np.uint8)
    pixels[:, :30] = (255, 0, 0)
    pixels[:, 30:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, quality=95, exif=exif)
    return path


def test_exif_orientation_is_applied_everywhere_images_are_read(tmp_path):
    from PIL import ImageOps

    # 6 = "rotate 90° clockwise to display": the stored left edge is the top of the upright photo
    path = _exif_jpeg(tmp_path / "phone.jpg", 6)
    upright = load_image(path)
    assert upright.size == (30, 60)
    arr = np.asarray(upright).astype(int)
    assert arr[2, 15, 0] > 200 and arr[2, 15, 2] < 50  # red on top
    assert arr[-3, 15, 2] > 200 and arr[-3, 15, 0] < 50  # blue at the bottom
    with Image.open(path) as im:
        assert np.array_equal(arr, np.asarray(ImageOps.exif_transpose(im)))  # as diffusers' load_image does
        assert load_image(im).size == (30, 60)  # an opened PIL image is turned as well
    assert tuple(to_tensor(path).shape) == (1, 3, 60, 30)
    # 3 = upside down: left and right swap; 1 and no tag: untouched
    assert np.asarray(load_image(_exif_jpeg(tmp_path / "flip.jpg", 3)))[15, 2, 2] > 200
    assert np.asarray(load_image(_exif_jpeg(tmp_path / "plain.jpg", 1)))[15, 2, 0] > 200
    turned_once = load_image(path)
    assert load_image(turned_once).size == (30, 60)  # the tag is gone after turning: never turned twice
