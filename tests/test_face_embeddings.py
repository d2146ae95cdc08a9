"""Face embeddings for InstantID / InfiniteYou: alignment, ONNX and facexlib preprocessing, errors."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from styleid_guidance.pipelines.face_embeddings import (
    ALIGNED_SIZE,
    ArcFaceEmbedder,
    ONNXFaceEmbedder,
    align_face,
    load_face_embedder,
)
from styleid_guidance.tiny.faces import TinyFaceEmbedder
from styleid_guidance.errors import NoFaceError, StyleIDError
from styleid_guidance.faces import ARCFACE_TEMPLATE


class _TinyRecognizer(nn.Module):
    """Stands in for glintr100 / w600k_r50: (N, 3, 112, 112) → (N, 512)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 8, stride=8)
        self.fc = nn.Linear(4 * 14 * 14, 512)

    def forward(self, x):
        return self.fc(torch.flatten(torch.relu(self.conv(x)), 1))


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    pytest.importorskip("onnx", reason="torch.onnx.export needs the onnx package")
    torch.manual_seed(0)
    model = _TinyRecognizer().eval()
    path = tmp_path_factory.mktemp("insightface") / "glintr100.onnx"
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated, but needs no onnxscript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (torch.zeros(1, 3, 112, 112),), str(path), dynamo=False,
                          input_names=["input.1"], output_names=["embedding"], dynamic_axes={"input.1": {0: "n"}})
    return model, path


def _crops(n: int = 2) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, ALIGNED_SIZE, ALIGNED_SIZE, 3), dtype=np.uint8)


def test_align_face_puts_landmarks_on_the_arcface_template():
    # a "face" drawn as five coloured dots, rotated 20° and scaled, on a 300x240 canvas
    angle, scale, shift = np.deg2rad(20), 1.7, np.array([60.0, 30.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    template = ARCFACE_TEMPLATE * ALIGNED_SIZE
    landmarks = template @ rot.T * scale + shift
    canvas = np.zeros((240, 300, 3), np.uint8)
    for i, (x, y) in enumerate(landmarks):
        canvas[int(round(y)) - 2:int(round(y)) + 3, int(round(x)) - 2:int(round(x)) + 3] = (50 * (i + 1), 255, 0)
    crop = align_face(Image.fromarray(canvas), landmarks)
    assert crop.shape == (ALIGNED_SIZE, ALIGNED_SIZE, 3) and crop.dtype == np.uint8
    for i, (x, y) in enumerate(template):
        patch = crop[int(round(y)) - 1:int(round(y)) + 2, int(round(x)) - 1:int(round(x)) + 2]
        assert patch[..., 1].max() > 200, f"landmark {i} not at its template position"
        assert abs(int(patch[..., 0].max()) - 50 * (i + 1)) <= 25, f"landmark {i} swapped with another"


def test_onnx_embedder_matches_the_exported_model_with_insightface_preprocessing(onnx_model):
    model, path = onnx_model
    embedder = ONNXFaceEmbedder(path)
    crops = _crops(3)
    got = embedder.embed_aligned(crops)
    with torch.no_grad():  # insightface: RGB, (x − 127.5) / 127.5, NCHW, raw output
        want = model((torch.from_numpy(crops).permute(0, 3, 1, 2).float() - 127.5) / 127.5)
    assert got.shape == (3, 512)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(got.norm(dim=1), torch.ones(3))  # raw, as upstream InstantID passes it


def test_onnx_embedder_finds_packs_by_file_folder_and_name(onnx_model, tmp_path):
    _, path = onnx_model
    assert ONNXFaceEmbedder.from_pretrained(path).model_path == path
    assert ONNXFaceEmbedder.from_pretrained(path.parent).model_path == path
    pack = tmp_path / "models" / "antelopev2"
    pack.mkdir(parents=True)
    (pack / "glintr100.onnx").write_bytes(path.read_bytes())
    assert ONNXFaceEmbedder.from_pretrained("antelopev2", root=tmp_path).model_path == pack / "glintr100.onnx"


def test_onnx_embedder_errors_are_one_clear_line(tmp_path):
    with pytest.raises(StyleIDError, match="buffalo_l.*w600k_r50.onnx not found"):
        ONNXFaceEmbedder.from_pretrained("buffalo_l", root=tmp_path)
    with pytest.raises(StyleIDError, match="not available"):  # offline: the Hub copy cannot be fetched
        ONNXFaceEmbedder.from_pretrained("antelopev2", root=tmp_path)
    with pytest.raises(StyleIDError, match="no such face model"):
        load_face_embedder("antelope", root=tmp_path)
    with pytest.raises(StyleIDError, match="no glintr100.onnx or w600k_r50.onnx inside"):
        ONNXFaceEmbedder.from_pretrained(tmp_path)
    bad = tmp_path / "glintr100.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(StyleIDError, match="cannot be loaded as an ONNX model"):
        ONNXFaceEmbedder(bad)


def test_arcface_embedder_feeds_bgr_in_minus_one_one_like_infiniteyou():
    seen = {}

    class Recorder(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(1))

        def forward(self, x):
            seen["x"] = x
            return torch.nn.functional.normalize(x.flatten(1)[:, :512], dim=1)

    crops = _crops(1)
    out = ArcFaceEmbedder(Recorder(), device="cpu").embed_aligned(crops)
    x = seen["x"][0]
    assert x.shape == (3, ALIGNED_SIZE, ALIGNED_SIZE)
    np.testing.assert_allclose(x[0].numpy(), crops[0, :, :, 2] / 255.0 * 2 - 1, atol=1e-6)  # blue first
    np.testing.assert_allclose(x[2].numpy(), crops[0, :, :, 0] / 255.0 * 2 - 1, atol=1e-6)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(1))


def test_tiny_embedder_is_deterministic_and_face_sensitive(astronaut):
    a = TinyFaceEmbedder()(astronaut)
    b = TinyFaceEmbedder()(astronaut)
    assert a.embedding.shape == (512,) and a.landmarks.shape == (5, 2)
    torch.testing.assert_close(a.embedding, b.embedding)
    # the landmarks are the astronaut's face (upper middle of the photo), eyes above the mouth
    assert 150 < a.landmarks[:, 0].mean() < 300 and a.landmarks[:2, 1].mean() < a.landmarks[3:, 1].mean()
    flipped = TinyFaceEmbedder()(astronaut.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    assert not torch.allclose(a.embedding, flipped.embedding, atol=1e-3)
    assert not torch.allclose(a.embedding, TinyFaceEmbedder(seed=1)(astronaut).embedding)


def test_image_without_face_is_a_clear_error():
    with pytest.raises(NoFaceError, match="reference: no face found"):
        TinyFaceEmbedder()(Image.new("RGB", (160, 160), (128, 128, 128)), name="reference")
