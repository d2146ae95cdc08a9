"""The Verify tab's group mode on the tiny profile: the last upload is a group photo, the others one person each
(named by file). One row per person with the face found for them, missing people listed, each face named in the
picture; bad people photos are one sentence."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from PIL import Image

from styleid_guidance.demo.tabs import verify
from styleid_guidance.demo.limits import Limits
from styleid_guidance.demo.profiles import Models
from styleid_guidance.errors import StyleIDError
from styleid_guidance.people.faces import detect_all_faces, face_crop
from support import REPO

FACES = REPO / "examples" / "faces"


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return Models("tiny", device="cpu")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Two people cut out of insightface's t1.jpg (ann: leftmost, bob: rightmost), and a group photo of the two
    side by side."""
    import insightface

    folder = tmp_path_factory.mktemp("group")
    t1 = Image.open(os.path.join(os.path.dirname(insightface.__file__), "data", "images", "t1.jpg")).convert("RGB")
    faces = detect_all_faces(t1, "mtcnn")
    ann, bob = face_crop(t1, faces[0]).resize((160, 160)), face_crop(t1, faces[-1]).resize((160, 160))
    group = Image.new("RGB", (360, 200), (90, 90, 90))
    group.paste(ann, (10, 20))
    group.paste(bob, (190, 20))
    for name, im in (("ann", ann), ("bob", bob), ("couple", group)):
        im.save(folder / f"{name}.png")
    return folder


def test_group_photo_one_row_per_person(models, photos):
    res = verify.run_verify(models, [photos / "ann.png", photos / "bob.png", FACES / "astronaut.jpg",
                                     photos / "couple.png"], Limits(), faces="group")
    names = [r[0] for r in res.rows]
    assert names == ["ann (face 1)", "bob (face 2)", "astronaut (missing)"]
    assert res.rows[0][1] > 0.99 and res.rows[0][2] == "same"  # ann's own photo, pasted into the group
    assert res.rows[2][1:3] == ["n/a", "missing"]
    assert "2 faces, 2 of 3 people found; missing: astronaut" in res.message
    assert res.chart.size == Image.open(photos / "couple.png").size


def test_bad_people_photos_are_one_sentence(models, photos, tmp_path):
    with pytest.raises(StyleIDError, match="couple.png: 2 faces found; crop it to couple's face alone"):
        verify.run_verify(models, [photos / "couple.png", photos / "ann.png", photos / "couple.png"], Limits(),
                          faces="group")
    twin = tmp_path / "ann.png"
    Image.open(photos / "bob.png").save(twin)
    with pytest.raises(StyleIDError, match="two photos are named 'ann'"):
        verify.run_verify(models, [photos / "ann.png", twin, photos / "couple.png"], Limits(), faces="group")
    with pytest.raises(StyleIDError, match="faces must be one of"):
        verify.run_verify(models, [photos / "ann.png", photos / "couple.png"], Limits(), faces="every")
