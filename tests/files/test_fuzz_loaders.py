"""Random bytes, truncations and odd image modes thrown at every loader: a clean result or a one-line
StyleIDError, never another exception (a traceback for the user) and never a partial output."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from styleid_guidance import StyleIDEncoder
from styleid_guidance.cli import run
from styleid_guidance.cli.config_options import load_config_file
from styleid_guidance.files.embeddings import read_embeddings, write_embeddings
from styleid_guidance.errors import StyleIDError
from styleid_guidance.files.images import load_image
from styleid_guidance.jojogan import checkpoints
from styleid_guidance.train.config import TrainConfig

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _png_bytes(mode: str = "RGB", size=(40, 32)) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def _clean_or_styleid_error(fn, *args):
    try:
        return fn(*args)
    except StyleIDError as err:
        assert str(err).strip() and "\n" not in str(err).strip(), repr(str(err))
        return None


@FUZZ
@given(data=st.binary(max_size=2048))
def test_random_bytes_as_an_image(tmp_path, data):
    path = tmp_path / "x.png"
    path.write_bytes(data)
    img = _clean_or_styleid_error(load_image, path)
    assert img is None or (img.mode == "RGB" and min(img.size) >= 16)


@FUZZ
@given(cut=st.floats(0.0, 0.99), which=st.sampled_from(["png", "jpeg"]))
def test_truncated_images(tmp_path, cut, which):
    data = _png_bytes() if which == "png" else _jpeg_bytes()
    path = tmp_path / f"t.{which}"
    path.write_bytes(data[: int(len(data) * cut)])
    img = _clean_or_styleid_error(load_image, path)
    assert img is None or img.mode == "RGB"


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "PA", "RGBA", "CMYK", "YCbCr", "I", "I;16", "F", "HSV"])
def test_every_image_mode_becomes_rgb_or_a_clear_error(tmp_path, mode):
    img = Image.new(mode, (40, 30))
    path = tmp_path / f"m.{'tiff' if mode in ('CMYK', 'YCbCr', 'F', 'HSV', 'I', 'I;16') else 'png'}"
    try:
        img.save(path)
    except (OSError, ValueError):
        pytest.skip(f"PIL cannot write mode {mode} here")
    out = _clean_or_styleid_error(load_image, path)
    assert out is None or (out.mode == "RGB" and out.size == (40, 30))
    direct = _clean_or_styleid_error(load_image, img)
    assert direct is None or direct.mode == "RGB"


@pytest.mark.parametrize("size", [(1, 1), (15, 200), (200, 15), (16, 16)])
def test_tiny_and_thin_images(size):
    out = _clean_or_styleid_error(load_image, Image.new("RGB", size))
    assert (out is not None) == (min(size) >= 16)


@pytest.fixture(scope="module")
def saved_encoder(tmp_path_factory):
    return StyleIDEncoder.from_pretrained("test-tiny", lora_rank=2).save_pretrained(tmp_path_factory.mktemp("e") / "enc")


@FUZZ
@given(name=st.sampled_from(["styleid_config.json", "backbone.safetensors", "adapter_config.json", "adapter_model.safetensors"]),
       cut=st.floats(0.0, 1.0), noise=st.binary(max_size=64))
def test_damaged_encoder_folders(saved_encoder, tmp_path_factory, name, cut, noise):
    import shutil

    folder = tmp_path_factory.mktemp("d") / "enc"
    shutil.copytree(saved_encoder, folder)
    data = (folder / name).read_bytes()
    (folder / name).write_bytes(data[: int(len(data) * cut)] + noise)
    enc = _clean_or_styleid_error(StyleIDEncoder.from_pretrained, folder)
    if enc is not None:  # the damage was harmless (e.g. trailing JSON whitespace): it must still embed
        assert torch.isfinite(enc.embed(torch.rand(1, 3, 64, 64), crop="center")).all()


@FUZZ
@given(data=st.binary(max_size=512), suffix=st.sampled_from([".yaml", ".json"]))
def test_damaged_config_files(tmp_path, data, suffix):
    path = tmp_path / f"c{suffix}"
    path.write_bytes(data)
    values = _clean_or_styleid_error(load_config_file, path, TrainConfig)
    assert values is None or isinstance(values, dict)


@FUZZ
@given(data=st.binary(max_size=1024), what=st.sampled_from(["stylegan", "e4e", "style"]))
def test_damaged_jojogan_checkpoints(tmp_path, data, what):
    path = tmp_path / "c.pt"
    path.write_bytes(data)
    loader = {"stylegan": checkpoints.load_stylegan, "e4e": checkpoints.load_e4e, "style": checkpoints.load_style}[what]
    assert _clean_or_styleid_error(loader, path) is None


@FUZZ
@given(cut=st.floats(0.0, 0.99), which=st.sampled_from(["npy", "sidecar", "safetensors"]))
def test_damaged_embedding_files(tmp_path, cut, which):
    target = tmp_path / ("e.safetensors" if which == "safetensors" else "e.npy")
    write_embeddings(target, torch.eye(4), ["a", "b", "c", "d"])
    victim = target.with_suffix(".files.txt") if which == "sidecar" else target
    data = victim.read_bytes()
    victim.write_bytes(data[: int(len(data) * cut)])
    result = _clean_or_styleid_error(read_embeddings, target)
    assert result is None or (len(result[0]) == len(result[1]))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=1, max_size=256))
def test_embed_command_on_a_damaged_image_never_writes_a_partial_output(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("imgs")
    Image.new("RGB", (32, 32), (10, 20, 30)).save(folder / "good.png")
    (folder / "bad.png").write_bytes(data)
    out = folder.parent / f"{folder.name}.npy"
    code = run(["embed", "--model", "test-tiny", "--crop", "center", str(folder), "-o", str(out), "--no-progress"])
    if code == 0:  # the random bytes happened to be a readable image
        emb, names = read_embeddings(out)
        assert len(emb) == 2
    else:
        assert code == 2 and not out.exists() and not out.with_suffix(".files.txt").exists()
