"""Several people in the ComfyUI nodes, in-process on insightface's six-person photo t1.jpg (test-tiny, mtcnn):
StyleIDSimilarity / StyleIDLikenessGate with faces = all (the Hungarian assignment of styleid_guidance.people, a
per-person table, named faces in the preview), StyleIDPickFace (crop and MASK of one person), and bad input as one
sentence each."""
from __future__ import annotations

import csv
import io
import os

import numpy as np
import pytest
import torch
from PIL import Image

from comfyui_support import import_comfy, need_root, requires_comfyui
from styleid_guidance.errors import StyleIDError

pytestmark = requires_comfyui()


def as_image(pil: Image.Image) -> torch.Tensor:
    """PIL → ComfyUI IMAGE [1, H, W, 3]."""
    return torch.from_numpy(np.asarray(pil.convert("RGB"), np.float32) / 255.0)[None]


@pytest.fixture(scope="module")
def engine():
    import_comfy(need_root())
    import insightface
    from styleid_guidance.integrations.comfyui.models import load_styleid_model
    from styleid_guidance.people.faces import face_crop

    model = load_styleid_model("test-tiny", device="cpu", detector="mtcnn")
    group = Image.open(os.path.join(os.path.dirname(insightface.__file__), "data", "images", "t1.jpg")).convert("RGB")
    group = group.resize((group.width // 2, group.height // 2))
    from styleid_guidance.integrations.comfyui.people import faces_in

    faces = faces_in(model, group)
    crops = [face_crop(group, f) for f in faces]
    return {"model": model, "group": group, "faces": faces, "crops": crops}


def run_similarity(engine, references, people, **kw):
    from styleid_guidance.integrations.comfyui.nodes_scoring import StyleIDSimilarity

    ref = as_image(references[0])
    more = {f"reference_{i}": as_image(r) for i, r in enumerate(references[1:])}
    with torch.inference_mode():
        return StyleIDSimilarity.execute(styleid_model=engine["model"], reference=ref, images=as_image(engine["group"]),
                                         threshold=kw.get("threshold", 0.4), faces="all", people=people,
                                         more_references=more)


def test_every_face_is_assigned_to_its_person(engine):
    assert len(engine["faces"]) >= 4  # the detector finds most of the six people
    left, right = engine["crops"][0], engine["crops"][-1]
    out = run_similarity(engine, [left, right], "left, right")
    (people,) = out.ui["people"]
    assert people["found"] == ["left", "right"] and people["missing"] == []
    assert people["people"]["left"]["face"] == 0 and people["people"]["right"]["face"] == len(engine["faces"]) - 1
    assert len(people["unknown_faces"]) == len(engine["faces"]) - 2
    rows = list(csv.DictReader(io.StringIO(out.args[3])))
    assert [(r["person"], r["status"]) for r in rows] == [("left", "found"), ("right", "found")]
    # a person's score is the model's cosine between the face's crop and the reference photo, as verify computes it
    z, _ = engine["model"].embed([as_image(left).permute(0, 3, 1, 2), as_image(engine["crops"][0]).permute(0, 3, 1, 2)], "x")
    assert float(rows[0]["similarity"]) == pytest.approx(float(z[0] @ z[1]), abs=1e-5)
    assert out.args[0] == [pytest.approx((people["people"]["left"]["similarity"] + people["people"]["right"]["similarity"]) / 2)]
    assert out.args[1] == [True]
    preview = out.args[4]
    assert tuple(preview.shape) == tuple(as_image(engine["group"]).shape)


def test_a_person_who_is_not_there_is_missing_and_the_gate_rejects(engine, astronaut):
    from styleid_guidance.integrations.comfyui.nodes_scoring import StyleIDLikenessGate

    # test-tiny is random (any two faces score high), so the threshold admits only the identical crop
    out = run_similarity(engine, [engine["crops"][0], astronaut], "left, astronaut", threshold=0.99999)
    (people,) = out.ui["people"]
    assert "astronaut" in people["missing"] and out.args[1] == [False]
    rows = {r["person"]: r for r in csv.DictReader(io.StringIO(out.args[3]))}
    assert rows["astronaut"]["status"] == "missing" and rows["astronaut"]["similarity"] == ""
    with torch.inference_mode():
        gate = StyleIDLikenessGate.execute(styleid_model=engine["model"], reference=as_image(engine["crops"][0]),
                                           images=as_image(engine["group"]), mode="threshold", threshold=0.99999, top_k=1,
                                           faces="all", people="left, astronaut",
                                           more_references={"reference_0": as_image(astronaut)})
    assert gate.args[4] == 0  # the astronaut is missing: the weakest person counts -1


def test_pick_face_by_reference_and_by_index(engine):
    from styleid_guidance.integrations.comfyui.nodes_people import StyleIDPickFace

    target = 2
    with torch.inference_mode():
        by_ref = StyleIDPickFace.execute(styleid_model=engine["model"], image=as_image(engine["group"]),
                                         reference=as_image(engine["crops"][target]), threshold=0.4, crop_size=128)
        by_index = StyleIDPickFace.execute(styleid_model=engine["model"], image=as_image(engine["group"]), index=0,
                                           crop_size=96)
        beyond = StyleIDPickFace.execute(styleid_model=engine["model"], image=as_image(engine["group"]), index=99)
    face, mask, sims, boxes = by_ref.args
    assert tuple(face.shape) == (1, 128, 128, 3) and tuple(mask.shape) == (1, engine["group"].height, engine["group"].width)
    (box,) = eval(boxes.replace("null", "None"))
    cx = (engine["faces"][target].box[0] + engine["faces"][target].box[2]) / 2
    assert box[0] <= cx <= box[2]  # the picked crop holds that person's face
    assert float(mask.sum()) == pytest.approx((box[2] - box[0]) * (box[3] - box[1]))
    assert sims[0] > 0.4
    assert tuple(by_index.args[0].shape) == (1, 96, 96, 3)
    assert by_index.args[3].startswith("[[") and float(by_index.args[1].sum()) > 0
    assert float(beyond.args[1].sum()) == 0 and beyond.args[2] == [-1.0] and beyond.args[3] == "[null]"


def test_bad_people_input_is_one_sentence(engine, astronaut):
    with pytest.raises(StyleIDError, match="one name per photo"):
        run_similarity(engine, [engine["crops"][0], engine["crops"][1]], "only_one")
    with pytest.raises(StyleIDError, match="given twice"):
        run_similarity(engine, [engine["crops"][0], engine["crops"][1]], "ann, ann")
    with pytest.raises(StyleIDError, match="faces found; crop it"):
        run_similarity(engine, [engine["group"]], "everyone")
    blank = Image.new("RGB", (128, 128), (128, 128, 128))
    with pytest.raises(StyleIDError, match="no face found"):
        run_similarity(engine, [blank], "nobody")


def test_guidance_pulls_each_person_toward_their_own_reference_in_their_region(engine):
    """Two people, two regions (left and right halves of a tiny SD1.5 sample): each region's similarity to its
    own person rises more than to the other person, on every seed; scale 0 is bit-identical."""
    from comfyui_support import conditioning, sample_and_decode, tiny_sd15, tiny_taesd
    from styleid_guidance.integrations.comfyui.nodes_guidance import StyleIDGuidance

    with torch.inference_mode():
        vae = tiny_taesd()
    model = tiny_sd15()
    # the pair test-tiny (a random encoder) tells apart most: skimage's camera man (cos 0.88 to this t1 face)
    from skimage import data

    refs = [engine["crops"][-1], Image.fromarray(data.camera()).convert("RGB")]
    ref = as_image(refs[0].resize((96, 96)))
    more = {"reference_0": as_image(refs[1].resize((256, 256)))}  # a photo of another size
    regions = torch.zeros(2, 64, 64)
    regions[0, :, :32], regions[1, :, 32:] = 1.0, 1.0

    def run(scale, seed):
        with torch.inference_mode():
            patched = StyleIDGuidance.execute(model=model, vae=vae, styleid_model=engine["model"], reference=ref,
                                              scale=scale, start_percent=0.0, end_percent=1.0, every_n_steps=1,
                                              regions=regions, more_references=more).args[0]
        positive, negative = conditioning()
        latent, image = sample_and_decode(patched, vae, seed, 4, 5.0, "euler", "normal", positive, negative, (1, 4, 8, 8))
        return latent, image, patched.model_options["sampler_post_cfg_function"][-1]

    def region_similarity(fn, image):
        x = image.permute(0, 3, 1, 2).clone()
        with torch.no_grad():
            halves = [x[..., :32], x[..., 32:]]
            return [[float(fn.styleid.center.embed(h)[0] @ ref_z) for ref_z in fn.people_refs] for h in halves]

    plain_latent, _, _ = run(0.0, 0)
    unguided_latent, _ = sample_unpatched(model, vae, 0)
    assert torch.equal(plain_latent, unguided_latent)
    for seed in (0, 1, 2):
        _, before_image, fn = run(0.0, seed)
        _, after_image, _ = run(0.5, seed)
        before, after = region_similarity(fn, before_image), region_similarity(fn, after_image)
        for person, other in ((0, 1), (1, 0)):
            own_gain = after[person][person] - before[person][person]
            other_gain = after[person][other] - before[person][other]
            assert own_gain > other_gain, (seed, person, own_gain, other_gain)


def sample_unpatched(model, vae, seed):
    from comfyui_support import conditioning, sample_and_decode

    positive, negative = conditioning()
    return sample_and_decode(model, vae, seed, 4, 5.0, "euler", "normal", positive, negative, (1, 4, 8, 8))


def test_regions_must_match_the_people(engine):
    from styleid_guidance.integrations.comfyui.nodes_guidance import StyleIDGuidance
    from comfyui_support import tiny_sd15, tiny_taesd

    with torch.inference_mode():
        vae = tiny_taesd()
    kw = dict(model=tiny_sd15(), vae=vae, styleid_model=engine["model"], reference=as_image(engine["crops"][0]),
              scale=0.1, start_percent=0.0, end_percent=1.0, every_n_steps=1)
    with pytest.raises(StyleIDError, match="2 masks for 1 reference photos"):
        StyleIDGuidance.execute(**kw, regions=torch.ones(2, 64, 64))
    with pytest.raises(StyleIDError, match="mask 1 is empty"):
        StyleIDGuidance.execute(**kw, regions=torch.zeros(1, 64, 64))
