"""FFHQ alignment from 5-point landmarks (MTCNN: offline; `astronaut` comes from conftest)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from styleid_guidance.jojogan.align import align_face, center_crop, ffhq_quad
from styleid_guidance.errors import NoFaceError, StyleIDError
from styleid_guidance.faces.detection import detect_faces


def test_ffhq_quad_geometry():
    # upright face: eyes 40 px apart at y=100, mouth 50 px below the eyes
    lm = np.array([[80, 100], [120, 100], [100, 125], [85, 150], [115, 150]], float)
    quad, qsize = ffhq_quad(lm)
    s = max(2 * 40, 1.8 * 50)  # half side
    center = np.array([100, 100 + 0.1 * 50])
    np.testing.assert_allclose(quad, center + np.array([[-s, -s], [-s, s], [s, s], [s, -s]]))
    assert qsize == pytest.approx(2 * s)
    # rotating the landmarks rotates the quad with them
    a = np.deg2rad(30)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    quad_r, qsize_r = ffhq_quad((lm - 100) @ rot.T + 100)
    np.testing.assert_allclose(quad_r, (quad - 100) @ rot.T + 100, atol=1e-9)
    assert qsize_r == pytest.approx(qsize)
    with pytest.raises(StyleIDError, match=r"\[5, 2\]"):
        ffhq_quad(np.zeros((68, 2)))


@pytest.mark.parametrize("angle", [0, 25])
def test_align_face_levels_and_centres_the_eyes(astronaut, angle):
    src = astronaut.rotate(angle, resample=Image.BILINEAR)
    aligned = align_face(src, 256, detector="mtcnn")
    assert aligned.size == (256, 256)
    lm = detect_faces(aligned, detector="mtcnn")[0].landmarks
    eye_l, eye_r = lm[0], lm[1]
    assert abs(eye_r[1] - eye_l[1]) < 0.03 * 256  # rotation removed
    assert abs((eye_l[0] + eye_r[0]) / 2 - 128) < 0.03 * 256  # horizontally centred
    assert 0.2 * 256 < eye_r[0] - eye_l[0] < 0.3 * 256  # eye distance <= side / 4 by construction
    assert 0.4 * 256 < (eye_l[1] + eye_r[1]) / 2 < 0.5 * 256  # eyes just above the centre (FFHQ framing)


def test_align_face_errors_and_fallback(tmp_path):
    blank = tmp_path / "wall.png"
    Image.new("RGB", (200, 160), (120, 130, 140)).save(blank)
    with pytest.raises(NoFaceError, match=r"wall\.png: no face found.*align=False") as err:
        align_face(str(blank), 64, detector="mtcnn")
    assert "--no-align" in err.value.for_cli()
    crop = center_crop(str(blank), 64)
    assert crop.size == (64, 64) and crop.getpixel((10, 10)) == (120, 130, 140)
