"""Face detection, alignment and the differentiable crop."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from styleid_guidance.errors import StyleIDError
from styleid_guidance.faces.detection import ARCFACE_TEMPLATE, FaceRegion, detect_faces, similarity_transform


def test_mtcnn_finds_the_astronaut(astronaut):
    faces = detect_faces(astronaut, detector="mtcnn")
    assert len(faces) == 1
    f = faces[0]
    x1, y1, x2, y2 = f.box
    assert 150 < x1 < x2 < 300 and 40 < y1 < y2 < 200  # her face, not the flag or the suit
    assert f.landmarks.shape == (5, 2) and f.landmarks[0, 0] < f.landmarks[1, 0]  # left eye left of right eye
    assert f.landmarks[2, 1] < f.landmarks[3, 1]  # nose above mouth


def test_similarity_transform_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(5, 2))
    angle, scale, shift = 0.3, 2.5, np.array([4.0, -1.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = src @ (scale * rot).T + shift
    m = similarity_transform(src, dst)
    np.testing.assert_allclose(m[:2, :2], scale * rot, atol=1e-9)
    np.testing.assert_allclose(m[:2, 2], shift, atol=1e-9)


def test_aligned_crop_puts_landmarks_on_the_template():
    # draw 5 bright dots at known landmark positions, crop, and find them again on the template
    h, w, out = 200, 300, 112
    lms = np.array([[120.0, 80.0], [170.0, 82.0], [146.0, 110.0], [125.0, 140.0], [168.0, 141.0]])
    img = torch.zeros(1, 3, h, w)
    for x, y in lms:
        img[0, :, int(y) - 1 : int(y) + 2, int(x) - 1 : int(x) + 2] = 1.0
    crop = FaceRegion.from_landmarks(lms + 0.5, (w, h)).crop(img, out, template="arcface")[0, 0]
    for tx, ty in ARCFACE_TEMPLATE * out:
        patch = crop[int(ty) - 3 : int(ty) + 4, int(tx) - 3 : int(tx) + 4]
        assert patch.max() > 0.3, (tx, ty)


def test_crop_is_differentiable_and_resolution_free(astronaut):
    lms = detect_faces(astronaut, detector="mtcnn")[0].landmarks
    region = FaceRegion.from_landmarks(lms, astronaut.size)
    x = torch.from_numpy(np.asarray(astronaut)).permute(2, 0, 1).float()[None] / 255
    x.requires_grad_(True)
    crop = region.crop(x, 112, "arcface")
    crop.mean().backward()
    assert x.grad.abs().sum() > 0
    small = torch.nn.functional.interpolate(x.detach(), size=(256, 256), mode="bilinear", antialias=True)
    assert (region.crop(small, 112, "arcface") - crop.detach()).abs().mean() < 0.03


def test_box_region_and_bad_box():
    r = FaceRegion.from_box((10, 20, 110, 140), (200, 200))
    assert r.landmarks.shape == (5, 2) and np.all((r.landmarks > 0) & (r.landmarks < 1))
    with pytest.raises(StyleIDError, match="x2>x1"):
        FaceRegion.from_box((10, 20, 5, 140), (200, 200))


def test_retinaface_offline_without_weights_is_a_clear_error(astronaut, tmp_path):
    with pytest.raises(StyleIDError, match="detector='mtcnn'") as err:
        detect_faces(astronaut, detector="retinaface", model_rootpath=str(tmp_path))
    assert "--detector mtcnn" in err.value.for_cli()  # what the command line prints
    with pytest.raises(StyleIDError, match="detector must be one of"):
        detect_faces(astronaut, detector="dlib")
