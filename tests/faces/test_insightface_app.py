"""The insightface front end: on a tiny SCRFD/ArcFace pack built here, FaceApp (and the embedders on it) give
the boxes, keypoints, crops and embeddings of insightface's own FaceAnalysis used as upstream uses it; pack
lookup never downloads behind the user's back; errors are one line."""
from __future__ import annotations

import warnings

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from styleid_guidance.faces import insightface_app
from styleid_guidance.errors import NoFaceError, StyleIDError
from styleid_guidance.faces.insightface_app import (INFINITEYOU_DET_SIZES, FaceApp, largest, norm_crop,
                                                    onnx_providers, pack_dir, to_bgr)
from styleid_guidance.pipelines.face_embeddings import InsightFaceEmbedder
from styleid_guidance.tiny.insightface_pack import DETECTOR_FILE, RECOGNIZER_FILE, build_pack, tiny_pack

FaceAnalysis = pytest.importorskip("insightface.app").FaceAnalysis
ARCFACE_DST = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]])


@pytest.fixture(scope="module")
def app():
    return FaceApp.tiny()


def _upstream_app(pack, det_size=640):
    """What every upstream entry point builds: FaceAnalysis(name, providers=...), prepare(ctx_id=0, det_size)."""
    fa = FaceAnalysis(name=str(pack), providers=["CPUExecutionProvider"])
    fa.prepare(ctx_id=0, det_size=(det_size, det_size))
    return fa


def _upstream_largest(faces):
    return sorted(faces, key=lambda x: (x["bbox"][2] - x["bbox"][0]) * (x["bbox"][3] - x["bbox"][1]))[-1]


def _upstream_get(fa, bgr):
    with warnings.catch_warnings():  # scikit-image 0.26 deprecates the estimate() insightface calls
        warnings.simplefilter("ignore", FutureWarning)
        return fa.get(bgr)


def _reference_crop(bgr, kps, size=112):
    """norm_crop written from its definition: least-squares similarity onto the ArcFace template, bilinear warp,
    black border."""
    from skimage.transform import SimilarityTransform

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        t = SimilarityTransform()
        t.estimate(np.asarray(kps, np.float32), (ARCFACE_DST * size / 112).astype(np.float32))
    return cv2.warpAffine(bgr, t.params[:2], (size, size), borderValue=0.0)


def test_same_faces_as_faceanalysis_used_as_upstream(app, astronaut):
    bgr = cv2.cvtColor(np.array(astronaut), cv2.COLOR_RGB2BGR)  # upstream: cv2.cvtColor(np.array(pil), RGB2BGR)
    want = _upstream_get(_upstream_app(tiny_pack()), bgr)
    got = app.detect(astronaut)
    assert len(got) == len(want) == 2
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.bbox, w.bbox)
        np.testing.assert_array_equal(g.kps, w.kps)
        np.testing.assert_array_equal(g.embedding, w.embedding)
        assert g.det_score == w.det_score
    # the pack's face A in closed form: anchor (272, 144) at stride 16, box (3.5, 4.7, 4.3, 5.8) strides, det scale 1.25
    face = largest(got)
    np.testing.assert_allclose(face.bbox, [(272 - 56) / 1.25, (144 - 75.2) / 1.25, (272 + 68.8) / 1.25, (144 + 92.8) / 1.25], atol=1e-3)
    np.testing.assert_array_equal(face.bbox, _upstream_largest(want).bbox)
    np.testing.assert_allclose(got[1].bbox, [384, 358.4, 435.2, 409.6], atol=1e-3)  # the small helmet box: not chosen


def test_embedder_gives_upstreams_crop_and_raw_embedding(app, astronaut):
    bgr = cv2.cvtColor(np.array(astronaut), cv2.COLOR_RGB2BGR)
    upstream = _upstream_largest(_upstream_get(_upstream_app(tiny_pack()), bgr))
    info = InsightFaceEmbedder(app)(astronaut)
    np.testing.assert_array_equal(info.landmarks, upstream.kps)
    np.testing.assert_array_equal(info.box, upstream.bbox)
    np.testing.assert_array_equal(info.embedding.numpy(), upstream.embedding)  # raw, as InstantID passes face['embedding']
    assert abs(float(info.embedding.norm()) - 1.0) > 0.1
    # the crop: insightface's norm_crop = the definition, and the recogniser on it, run directly, gives the embedding
    crop = norm_crop(bgr, upstream.kps)
    reference = _reference_crop(bgr, upstream.kps)
    assert crop.shape == (112, 112, 3)
    np.testing.assert_array_equal(crop, reference)  # float32 template and landmarks, as insightface stores them
    session = ort.InferenceSession(str(tiny_pack() / RECOGNIZER_FILE), providers=["CPUExecutionProvider"])
    x = ((crop[:, :, ::-1].astype(np.float32) - 127.5) / 127.5).transpose(2, 0, 1)[None]  # RGB, (x − 127.5)/127.5
    np.testing.assert_allclose(session.run(None, {"input.1": np.ascontiguousarray(x)})[0][0], upstream.embedding, atol=1e-5)
    # embed_aligned (RGB crops in) is the same recogniser
    np.testing.assert_allclose(InsightFaceEmbedder(app).embed_aligned(crop[None, :, :, ::-1])[0].numpy(), upstream.embedding, atol=1e-5)
    wrong = InsightFaceEmbedder(app).embed_aligned(crop[None])[0].numpy()  # channels swapped: must differ
    assert np.abs(wrong - upstream.embedding).max() > 1e-2


def test_retry_is_infiniteyous_640_320_160():
    # the gated pack fires only where the image under its anchor is bright: on this image at 320, not at 640
    image = np.zeros((512, 512, 3), np.uint8)
    image[200:300, 400:500] = 255
    bgr = image[:, :, ::-1].copy()
    upstream = {s: _upstream_get(_upstream_app(tiny_pack("gated"), s), bgr) for s in INFINITEYOU_DET_SIZES}
    assert not upstream[640] and upstream[320]
    expected = next(faces for faces in upstream.values() if faces)  # InfiniteYou's _detect_face
    app = FaceApp.tiny("gated")
    assert app.detect(image) == []
    got = app.detect(image, retry=True)
    assert len(got) == len(expected) == 1
    np.testing.assert_array_equal(got[0].bbox, expected[0].bbox)
    np.testing.assert_array_equal(got[0].kps, expected[0].kps)
    assert app.det_size == 640 and app.detect(image) == []  # the detector is back at its prepared size
    with pytest.raises(NoFaceError, match="pose: no face found"):
        app.largest_face(np.zeros((64, 64, 3), np.uint8), retry=True, name="pose")


def test_largest_face_rule_is_upstreams_including_ties():
    class F(dict):
        __getattr__ = dict.get

    a, b, c = F(bbox=np.array([0, 0, 10, 10.0])), F(bbox=np.array([5, 5, 25, 25.0])), F(bbox=np.array([50, 50, 70, 70.0]))
    assert largest([a, b, c]) is c and largest([c, b, a]) is b  # equal areas: the later one, as sorted(...)[-1]
    assert largest([a]) is a


def test_pack_dir_finds_folders_names_and_the_nested_zip_layout(tmp_path):
    pack = tiny_pack()
    assert pack_dir(pack) == pack
    root = tmp_path / "root"
    build_pack(root / "models" / "buffalo_l")
    assert pack_dir("buffalo_l", root) == root / "models" / "buffalo_l"
    nested = build_pack(tmp_path / "r2" / "models" / "antelopev2" / "antelopev2")  # how antelopev2.zip unpacks
    assert pack_dir("antelopev2", tmp_path / "r2") == nested
    assert pack_dir(nested.parent) == nested
    app = FaceApp("buffalo_l", root, device="cpu")
    assert app.model_dir == root / "models" / "buffalo_l" and app.providers == ["CPUExecutionProvider"]


def test_missing_pack_offline_is_one_line_and_never_downloads(tmp_path, monkeypatch):
    import insightface.utils.storage as storage

    from styleid_guidance.hub import resolve as hub

    def forbidden(*a, **k):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(storage, "download", forbidden)
    monkeypatch.setattr(hub, "resolve_model_dir", forbidden)
    for name in ("antelopev2", "buffalo_l"):
        with pytest.raises(StyleIDError) as err:
            FaceApp(name, tmp_path)
        message = str(err.value)
        assert "\n" not in message and str(tmp_path / "models" / name) in message and "downloads are off" in message
        assert ("scrfd_10g_bnkps.onnx" in message) if name == "antelopev2" else ("w600k_r50.onnx" in message)
        assert not (tmp_path / "models").exists()  # nothing created either (insightface would leave models/)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("STYLEID_OFFLINE")
    with pytest.raises(StyleIDError, match=r"buffalo_l.*no automatic download.*releases/download/model-zoo/buffalo_l.zip"):
        pack_dir("buffalo_l", tmp_path)


def test_missing_antelopev2_online_comes_from_its_hub_copy(tmp_path, monkeypatch):
    from styleid_guidance.hub import resolve as hub

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("STYLEID_OFFLINE")
    calls = []

    def fake_resolve(repo, kind, allow_patterns):
        calls.append((repo, allow_patterns))
        sub = tmp_path / "snapshot" / "supports" / "insightface" / "models" / "antelopev2"
        build_pack(sub)
        (sub / DETECTOR_FILE).rename(sub / "scrfd_10g_bnkps.onnx")
        return tmp_path / "snapshot"

    monkeypatch.setattr(hub, "resolve_model_dir", fake_resolve)
    folder = pack_dir("antelopev2", tmp_path / "root")
    assert folder == tmp_path / "snapshot" / "supports" / "insightface" / "models" / "antelopev2"
    assert calls == [("ByteDance/InfiniteYou", ("supports/insightface/models/antelopev2/scrfd_10g_bnkps.onnx",
                                                "supports/insightface/models/antelopev2/glintr100.onnx"))]


def test_bad_packs_and_inputs_are_one_line_errors(tmp_path, app):
    with pytest.raises(StyleIDError, match="not a known insightface pack"):
        pack_dir("antelope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StyleIDError, match="empty: no .onnx files inside"):
        FaceApp(tmp_path / "empty")
    (tmp_path / "file.onnx").write_bytes(b"x")
    with pytest.raises(StyleIDError, match="is a file"):
        pack_dir(tmp_path / "file.onnx")
    recogniser_only = tmp_path / "rec"
    recogniser_only.mkdir()
    (recogniser_only / RECOGNIZER_FILE).write_bytes((tiny_pack() / RECOGNIZER_FILE).read_bytes())
    with pytest.raises(StyleIDError, match="no face detector"):
        FaceApp(recogniser_only)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "det.onnx").write_bytes(b"not an onnx model")
    with pytest.raises(StyleIDError, match="cannot be loaded"):
        FaceApp(broken)
    with pytest.raises(StyleIDError, match="BGR uint8"):
        app.get(np.zeros((32, 32), np.float32))
    with pytest.raises(StyleIDError, match="no recognition model"):
        FaceApp.tiny(modules=("detection",)).embed_crops(np.zeros((1, 112, 112, 3), np.uint8))


def test_providers_follow_the_device(app):
    assert onnx_providers("cpu") == ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.warns(RuntimeWarning, match="no CUDA provider"):
            assert onnx_providers("cuda:1") == ["CPUExecutionProvider"]
        assert onnx_providers(None) == ["CPUExecutionProvider"]
    else:
        assert onnx_providers("cuda:1")[0] == ("CUDAExecutionProvider", {"device_id": 1})
    assert app.analysis.det_model.session.get_providers() == ["CPUExecutionProvider"]


def test_to_bgr_and_project_inputs(app, astronaut, tmp_path):
    bgr = to_bgr(astronaut)
    assert bgr.dtype == np.uint8 and bgr.flags.c_contiguous and (bgr[..., 0] == np.asarray(astronaut)[..., 2]).all()
    path = tmp_path / "a.png"
    astronaut.save(path)
    by_path = app.detect(path)
    by_tensor = app.detect(torch.from_numpy(np.array(astronaut)).permute(2, 0, 1).float() / 255)
    assert [f.bbox.tolist() for f in by_path] == [f.bbox.tolist() for f in by_tensor] == [f.bbox.tolist() for f in app.detect(astronaut)]
    assert isinstance(app.largest_face(Image.fromarray(np.asarray(astronaut))).embedding, np.ndarray)
    assert insightface_app.DET_SIZE == 640
