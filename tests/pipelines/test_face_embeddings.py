"""Face embeddings for InstantID / InfiniteYou: alignment, ONNX and facexlib preprocessing, errors."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from styleid_guidance.pipelines.face_embeddings import (ALIGNED_SIZE, ArcFaceEmbedder, InsightFaceEmbedder,
                                                        ONNXFaceEmbedder, align_face, load_face_embedder)
from styleid_guidance.tiny.face_embedder import TinyFaceEmbedder
from styleid_guidance.errors import NoFaceError, StyleIDError
from styleid_guidance.faces.detection import ARCFACE_TEMPLATE


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
    with pytest.raises(StyleIDError, match="'buffalo_l' not found in .*downloads are off; put det_10g.onnx and w600k_r50.onnx"):
        ONNXFaceEmbedder.from_pretrained("buffalo_l", root=tmp_path)
    with pytest.raises(StyleIDError, match="'antelopev2' not found in .*downloads are off"):  # offline: no Hub copy fetched
        ONNXFaceEmbedder.from_pretrained("antelopev2", root=tmp_path)
    with pytest.raises(StyleIDError, match="not a known insightface pack"):
        load_face_embedder("antelope", root=tmp_path)
    with pytest.raises(StyleIDError, match="no glintr100.onnx or w600k_r50.onnx inside"):
        ONNXFaceEmbedder.from_pretrained(tmp_path)
    bad = tmp_path / "glintr100.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(StyleIDError, match="cannot be loaded as an ONNX model"):
        ONNXFaceEmbedder(bad)
    with pytest.raises(StyleIDError, match="no such face model file"):
        ONNXFaceEmbedder.from_pretrained(tmp_path / "missing.onnx")


def test_load_face_embedder_uses_the_pack_end_to_end_unless_a_detector_is_named(astronaut):
    from styleid_guidance.tiny.insightface_pack import tiny_pack

    pack = tiny_pack()
    upstream = load_face_embedder(str(pack), device="cpu")
    assert isinstance(upstream, InsightFaceEmbedder) and upstream.face_app.model_dir == pack
    offline = load_face_embedder(str(pack / "w600k_tiny.onnx"), detector="mtcnn")
    assert isinstance(offline, ONNXFaceEmbedder) and offline.detector == "mtcnn" and offline.face_app is None
    a, b = upstream(astronaut), offline(astronaut)
    # the same recogniser on two front ends: SCRFD's keypoints vs MTCNN's give different crops, so different embeddings
    assert torch.nn.functional.cosine_similarity(a.embedding, b.embedding, dim=0) < 0.9999
    assert np.abs(a.landmarks - b.landmarks).max() > 0.5
    assert isinstance(load_face_embedder("tiny"), TinyFaceEmbedder)


def test_infiniteyou_front_end_insightface_detection_facexlib_crop(astronaut):
    """InfiniteYou: antelopev2 SCRFD (640 → 320 → 160), largest face, norm_crop on the BGR photo, then
    torch.from_numpy(crop).permute(0, 3, 1, 2) / 255, 2x − 1, channels kept BGR, into IR-SE50."""
    import cv2
    from insightface.utils import face_align

    from styleid_guidance.faces.insightface_app import FaceApp

    seen = {}

    class Recorder(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(1))

        def forward(self, x):
            seen["x"] = x
            return torch.nn.functional.normalize(x.flatten(1)[:, :512], dim=1)

    app = FaceApp.tiny(modules=("detection",))
    embedder = ArcFaceEmbedder(Recorder(), device="cpu", face_app=app, retry=True)
    info = embedder(astronaut)
    bgr = cv2.cvtColor(np.array(astronaut), cv2.COLOR_RGB2BGR)
    faces = app.get(bgr, (640, 320, 160))
    face = sorted(faces, key=lambda x: (x["bbox"][2] - x["bbox"][0]) * (x["bbox"][3] - x["bbox"][1]))[-1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        crop = face_align.norm_crop(bgr, landmark=np.array(face["kps"]), image_size=112)
    upstream = torch.from_numpy(crop).unsqueeze(0).permute(0, 3, 1, 2) / 255.0
    upstream = (2 * upstream - 1).contiguous()
    assert torch.equal(seen["x"], upstream)
    np.testing.assert_array_equal(info.landmarks, face["kps"])
    # retry reaches the detector: on the gated pack, only 320 finds this face
    image = np.zeros((512, 512, 3), np.uint8)
    image[200:300, 400:500] = 255
    gated = ArcFaceEmbedder(Recorder(), device="cpu", face_app=FaceApp.tiny("gated", modules=("detection",)), retry=True)
    landmarks, box = gated.detect(image)
    assert box[2] > 500  # the face found at det_size 320 (box ≈ [345.6, 110.1, 545.3, 378.9])
    with pytest.raises(NoFaceError, match="face image: no face found"):
        ArcFaceEmbedder(Recorder(), device="cpu", face_app=gated.face_app, retry=False)(image)


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
