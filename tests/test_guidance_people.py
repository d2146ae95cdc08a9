"""Identity guidance for several people in one picture (PeopleIdentityLoss), in a tiny random SD1.5 pipeline.

The tiny encoder is random, so "closer to the reference" is a property of the guidance under the loss it
optimises, not of trained weights; what is tested is that each face region moves towards its own person.
"""
from __future__ import annotations

import itertools
import os

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from PIL import Image

from styleid_guidance import NoFaceError, PeopleIdentityLoss, StyleIDEncoder, StyleIDError, build_identity_loss
from styleid_guidance.faces.detection import Face, FaceRegion
from styleid_guidance.files.images import to_tensor
from styleid_guidance.integrations import IdentityGuidanceCallback, prepare_guidance_kwargs
from styleid_guidance.people_loss import assign_faces, region_from_pose
from styleid_guidance.tiny.sd import tiny_sd15_components

STEPS, SIZE = 6, 64
# two faces side by side in the 64-px image; the StyleID framing is 1/0.6 of the box, so the crops do not overlap
BOXES = {"ann": (7, 23, 25, 41), "bob": (39, 23, 57, 41)}
REGIONS = {name: FaceRegion.from_box(box, (SIZE, SIZE)) for name, box in BOXES.items()}


@pytest.fixture(scope="module")
def encoder():
    return StyleIDEncoder.from_open_clip("test-tiny", pretrained=None)


@pytest.fixture(scope="module")
def group_face() -> Image.Image:
    """The rightmost adult of insightface's shipped six-person photo t1.jpg, cut out with room around the face."""
    import insightface

    t1 = Image.open(os.path.join(os.path.dirname(insightface.__file__), "data", "images", "t1.jpg")).convert("RGB")
    return t1.crop((1079, 204, 1283, 466))


@pytest.fixture(scope="module")
def pipe():
    p = StableDiffusionPipeline(**tiny_sd15_components())
    p.set_progress_bar_config(disable=True)
    return p


def _loss(encoder, references, regions=REGIONS, **kw) -> PeopleIdentityLoss:
    loss = build_identity_loss("styleid", reference=references, people=True, model=encoder, device="cpu",
                               detector="mtcnn", face_region=regions)
    for k, v in kw.items():
        setattr(loss, k, v)
    return loss


def _run(pipe, cb=None, seed=0) -> torch.Tensor:
    kw = prepare_guidance_kwargs(pipe, cb) if cb is not None else {}
    return pipe(prompt="two faces", num_inference_steps=STEPS, height=SIZE, width=SIZE, guidance_scale=1.0,
                generator=torch.Generator().manual_seed(seed), output_type="pt", **kw).images.float()


def _gains(loss, pipe, seed, scale=0.3) -> torch.Tensor:
    """[P, P] change of (person i's face crop of the final image vs person j's reference), guided − unguided."""
    base = _run(pipe, seed=seed)
    guided = _run(pipe, IdentityGuidanceCallback(loss, scale=scale, end=1.0), seed=seed)
    assert torch.isfinite(guided).all() and not torch.equal(guided, base)
    with torch.no_grad():
        return loss.similarities(guided)[0] - loss.similarities(base)[0]


# -- the assignment ------------------------------------------------------------------------------------------

def _brute_force(sim: np.ndarray) -> float:
    f, p = sim.shape
    if f >= p:
        return max(sum(sim[rows[c], c] for c in range(p)) for rows in itertools.permutations(range(f), p))
    return max(sum(sim[r, cols[r]] for r in range(f)) for cols in itertools.permutations(range(p), f))


@pytest.mark.parametrize("shape", [(1, 1), (2, 2), (3, 2), (2, 3), (4, 4), (1, 3), (4, 2)])
def test_assignment_is_optimal_against_brute_force(shape):
    rng = np.random.default_rng(sum(shape))
    for _ in range(20):
        sim = rng.uniform(-1, 1, shape)
        people = assign_faces(sim)
        faces = [f for f in people if f is not None]
        assert len(faces) == min(shape) and len(set(faces)) == len(faces)  # one-to-one, as many pairs as possible
        total = sum(sim[f, p] for p, f in enumerate(people) if f is not None)
        assert total == pytest.approx(_brute_force(sim))


def test_assignment_threshold_and_non_finite():
    sim = np.array([[0.9, 0.8], [0.85, 0.1]])
    assert assign_faces(sim) == [1, 0]  # 0.85 + 0.8 beats 0.9 + 0.1: the greedy pick is not the assignment
    assert assign_faces(sim, threshold=0.82) == [1, None]
    assert assign_faces(np.array([[np.nan, 0.5], [0.4, 0.2]])) == [1, 0]
    assert assign_faces(np.zeros((0, 2))) == [None, None]
    with pytest.raises(StyleIDError, match="matrix"):
        assign_faces(np.zeros(3))


# -- regions the caller passes -------------------------------------------------------------------------------

@pytest.mark.parametrize("layout,order", [("coco", (2, 1, 0)), ("openpose", (14, 15, 0))])
def test_pose_keypoints_place_the_face_like_its_landmarks(layout, order):
    region = FaceRegion.from_box((10, 20, 42, 52), (64, 80))  # square: the template up to a similarity
    landmarks = region.landmarks * np.array([64, 80])
    keypoints = np.zeros((18, 3))
    keypoints[list(order), :2] = landmarks[:3]  # image-left eye (the subject's right eye), image-right eye, nose
    keypoints[list(order), 2] = 1.0
    np.testing.assert_allclose(region_from_pose(keypoints, (64, 80), layout).landmarks, region.landmarks, atol=1e-9)
    keypoints[order[2], 2] = 0.0
    with pytest.raises(StyleIDError, match="visible"):
        region_from_pose(keypoints, (64, 80), layout)
    with pytest.raises(StyleIDError, match="layout"):
        region_from_pose(keypoints, (64, 80), "mediapipe")


# -- guidance ------------------------------------------------------------------------------------------------

def test_scale_zero_is_bit_identical(pipe, encoder, camera, group_face):
    loss = _loss(encoder, {"ann": camera, "bob": group_face})
    calls = []
    detecting = _loss(encoder, {"ann": camera, "bob": group_face}, regions=None,
                      face_detector=lambda image: calls.append(1) or [])
    base = _run(pipe)
    assert torch.equal(_run(pipe, IdentityGuidanceCallback(loss, scale=0.0)), base)
    assert torch.equal(_run(pipe, IdentityGuidanceCallback(detecting, scale=0.0)), base)
    assert calls == []  # scale 0 does not even look for faces


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_person_moves_towards_their_own_reference(pipe, encoder, camera, group_face, seed):
    loss = _loss(encoder, {"ann": camera, "bob": group_face}, contrast=0.0)  # plain pull: these two are told apart
    assert isinstance(loss, PeopleIdentityLoss) and loss.names == ["ann", "bob"]
    gain = _gains(loss, pipe, seed)
    for i, j in ((0, 1), (1, 0)):
        # measured on each person's region of the final image: own reference up, and more than the other's
        assert gain[i, i] > 0.003, gain
        assert gain[i, i] > gain[i, j] + 0.005, gain


def test_contrast_pushes_each_face_off_the_other_reference(pipe, encoder, astronaut, camera):
    """The tiny encoder maps every face near one direction (these references: cos 0.95); pulling the left face to
    the astronaut alone then raises its similarity to the camera man even more. The push term reverses that."""
    margins = {}
    for contrast in (0.0, 0.5):
        gain = _gains(_loss(encoder, {"ann": astronaut, "bob": camera}, contrast=contrast), pipe, seed=0)
        margins[contrast] = torch.stack([gain[0, 0] - gain[0, 1], gain[1, 1] - gain[1, 0]])
    assert (margins[0.5] > margins[0.0] + 0.01).all(), margins
    assert (margins[0.5] > 0).all(), margins


# -- regions detected on x0 ----------------------------------------------------------------------------------

def test_faces_in_a_group_image_are_matched_to_their_people(encoder, astronaut, camera):
    loss = _loss(encoder, {"ann": astronaut, "bob": camera}, regions=None)
    left, right = camera.resize((256, 256)), astronaut.resize((256, 256))
    group = Image.new("RGB", (512, 256))
    group.paste(left, (0, 0))
    group.paste(right, (256, 0))
    match = loss.locate(group)[0]
    assert set(match) == {"ann", "bob"} and None not in match.values()
    x = loss._landmarks[0, :, :, 0].mean(1)  # each person's face centre, normalised x
    assert x[0] > 0.5 > x[1]  # ann (the astronaut) on the right, bob (the camera man) on the left
    own = loss.similarity(group)[0]
    assert (own > 0.99).all(), own  # each crop is that person's own reference face
    # a batch: each sample gets its own regions (the second picture has the two people the other way round)
    other = Image.new("RGB", (512, 256))
    other.paste(right, (0, 0))
    other.paste(left, (256, 0))
    batch = torch.cat([to_tensor(group), to_tensor(other)])
    loss.locate(batch)
    x = loss._landmarks[:, :, :, 0].mean(2)  # [B, P]
    assert x[0, 0] > 0.5 > x[0, 1] and x[1, 0] < 0.5 < x[1, 1], x
    assert (loss.similarity(batch) > 0.99).all()
    # only one of them in the picture: the other is missing (NaN), not an error
    alone = _loss(encoder, {"ann": astronaut, "bob": camera}, regions=None)
    sims = alone.similarity(right)[0]
    assert sims[0] > 0.99 and torch.isnan(sims[1])
    assert alone(right.resize((64, 64))).shape == (1,)


def _fake_faces(boxes):
    def detect(image):
        w, h = image.size
        faces = []
        for box in boxes:
            region = FaceRegion.from_box(box, (w, h))
            faces.append(Face(np.asarray(box, np.float64), region.landmarks * np.array([w, h]), 1.0))
        return faces
    return detect


def test_guidance_redetects_every_k_steps_and_while_someone_is_missing(pipe, encoder, camera, group_face):
    seen = []
    found = _fake_faces([BOXES["bob"], BOXES["ann"]])

    def detector(image):
        seen.append(image.size)
        return found(image)

    loss = _loss(encoder, {"ann": camera, "bob": group_face}, regions=None, face_detector=detector, detect_every=2)
    base = _run(pipe)
    guided = _run(pipe, IdentityGuidanceCallback(loss, scale=0.3, end=1.0))
    assert not torch.equal(guided, base)
    assert seen == [(SIZE, SIZE)] * 3  # guided steps 0, 2 and 4 of 6
    assert loss.found(1).all()
    _run(pipe, IdentityGuidanceCallback(loss, scale=0.3, end=1.0))
    assert len(seen) == 6  # a new run starts over: its own faces, found again at steps 0, 2, 4

    # nobody visible at first: detection runs every step until both are found, then every k
    seen.clear()
    loss.face_detector = lambda image: (seen.append(1), found(image) if len(seen) > 2 else [])[1]
    _run(pipe, IdentityGuidanceCallback(loss, scale=0.3, end=1.0))
    assert len(seen) == 4  # steps 0, 1, 2 (found), then 4
    # a person never found is left alone: with no faces at all, guidance changes nothing
    loss.face_detector = lambda image: []
    assert torch.equal(_run(pipe, IdentityGuidanceCallback(loss, scale=0.3, end=1.0)), base)


# -- bad input -------------------------------------------------------------------------------------------------

def test_bad_people_input_is_one_clear_error(encoder, astronaut, camera):
    with pytest.raises(StyleIDError, match=r"reference=\{name"):
        build_identity_loss("styleid", reference=[astronaut, camera], people=True, model=encoder, device="cpu", detector="mtcnn")
    with pytest.raises(StyleIDError, match="missing: \\['bob'\\]"):
        _loss(encoder, {"ann": astronaut, "bob": camera}, regions={"ann": REGIONS["ann"]})
    with pytest.raises(StyleIDError, match="FaceRegion"):
        _loss(encoder, {"ann": astronaut, "bob": camera}, regions={"ann": REGIONS["ann"], "bob": (1, 2, 3, 4)})
    with pytest.raises(StyleIDError, match="duplicate"):
        _loss(encoder, {1: astronaut, "1": camera})
    with pytest.raises(NoFaceError, match="reference for 'bob': no face"):
        _loss(encoder, {"ann": astronaut, "bob": Image.new("RGB", (128, 128), (128, 128, 128))})
    pair = Image.new("RGB", (512, 256))
    pair.paste(camera.resize((256, 256)), (0, 0))
    pair.paste(astronaut.resize((256, 256)), (256, 0))
    with pytest.raises(StyleIDError, match="reference for 'ann': 2 faces found .*crop it to ann's face"):
        _loss(encoder, {"ann": pair, "bob": camera})
    with pytest.raises(StyleIDError, match="crop='face'"):
        build_identity_loss("styleid", reference={"ann": astronaut}, people=True, model=encoder, device="cpu", crop="center")
    loss = _loss(encoder, {"ann": astronaut, "bob": camera})
    with pytest.raises(StyleIDError, match="augment"):
        IdentityGuidanceCallback(loss, augment=2)  # a flip would swap the people left and right
