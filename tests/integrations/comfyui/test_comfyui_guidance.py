"""StyleIDGuidance through ComfyUI's own sampler (`comfy.sample.sample`), in-process, on a tiny random
SD1.5-layout model with a random TAESD: bit-identical at scale 0, higher similarity on every seed, composes
with other post-CFG patches, respects its step window, and refuses bad inputs with one sentence."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from comfyui_support import (comfyui_root, conditioning, import_comfy, need_root, requires_comfyui, sample_and_decode,
                             tiny_sd15, tiny_taesd)
from styleid_guidance.errors import StyleIDError
from styleid_guidance.eval.calibration import Calibration

ROOT = comfyui_root()
pytestmark = requires_comfyui()
STEPS = 4
SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def engine():
    import_comfy(need_root())
    from styleid_guidance.integrations.comfyui.models import load_styleid_model

    with torch.inference_mode():  # as ComfyUI's loader nodes run: weights become inference tensors
        vae = tiny_taesd()
    return {"model": tiny_sd15(), "vae": vae, "styleid": load_styleid_model("test-tiny", device="cpu", detector="mtcnn")}


@pytest.fixture(scope="module")
def reference(astronaut):
    """ComfyUI IMAGE [1,H,W,3] of a face photo."""
    return torch.from_numpy(np.asarray(astronaut.resize((128, 128)), np.float32) / 255.0)[None]


def sample(model, seed, vae):
    positive, negative = conditioning()
    return sample_and_decode(model, vae, seed, STEPS, 5.0, "euler", "normal", positive, negative, (1, 4, 8, 8))


def guide(engine, reference, scale, **kw):
    from styleid_guidance.integrations.comfyui.nodes_guidance import StyleIDGuidance

    settings = dict(start_percent=0.0, end_percent=1.0, every_n_steps=1) | kw
    with torch.inference_mode():
        out = StyleIDGuidance.execute(model=engine["model"], vae=engine["vae"], styleid_model=engine["styleid"],
                                      reference=reference, scale=scale, **settings)
    patched = out.args[0]
    return patched, patched.model_options["sampler_post_cfg_function"][-1]


def similarity(fn, image):
    with torch.no_grad():
        return 1.0 - float(fn.identity_loss(image.permute(0, 3, 1, 2).clone())[0])


def test_scale_zero_is_bit_identical(engine, reference):
    patched, fn = guide(engine, reference, 0.0)
    assert patched is not engine["model"] and len(patched.model_options["sampler_post_cfg_function"]) == 1
    for seed in SEEDS[:2]:
        assert torch.equal(sample(patched, seed, engine["vae"])[0], sample(engine["model"], seed, engine["vae"])[0])
    assert fn.last_losses == []
    assert "sampler_post_cfg_function" not in engine["model"].model_options  # the input MODEL is untouched


def test_guidance_raises_similarity_on_every_seed(engine, reference):
    patched, fn = guide(engine, reference, 0.5)
    assert fn.region is not None  # the reference's face landmarks place the crop
    gains = []
    for seed in SEEDS:
        fn.last_losses.clear()
        guided = similarity(fn, sample(patched, seed, engine["vae"])[1])
        plain = similarity(fn, sample(engine["model"], seed, engine["vae"])[1])
        assert len(fn.last_losses) == STEPS and all(np.isfinite(fn.last_losses))
        gains.append(guided - plain)
    assert all(g > 0 for g in gains), gains


def test_composes_with_other_post_cfg_patches(engine, reference):
    seen = {"before": 0, "after": []}

    def before(args):  # another pack's patch applied earlier in the graph
        seen["before"] += 1
        return args["denoised"] + 0.01

    def after(args):  # and one applied later: it receives our corrected x0
        seen["after"].append(args["denoised"].clone())
        return args["denoised"]

    other = engine["model"].clone()
    other.set_model_sampler_post_cfg_function(before)
    ours, fn = guide({**engine, "model": other}, reference, 0.5)
    ours.set_model_sampler_post_cfg_function(after)
    assert ours.model_options["sampler_post_cfg_function"][1] is fn
    out = sample(ours, 0, engine["vae"])[0]
    assert seen["before"] == STEPS and len(seen["after"]) == STEPS and len(fn.last_losses) == STEPS
    only_other = sample(other, 0, engine["vae"])[0]
    assert not torch.equal(out, only_other)  # guidance changed what the other patch produced


def test_every_n_steps_and_window(engine, reference):
    _, every2 = guide(engine, reference, 0.5, every_n_steps=2)
    sample(_, 0, engine["vae"])
    assert len(every2.last_losses) == STEPS // 2
    late, fn = guide(engine, reference, 0.5, start_percent=0.5, end_percent=1.0)
    sample(late, 0, engine["vae"])
    assert 0 < len(fn.last_losses) < STEPS


def test_several_references_and_a_reference_without_face(engine, reference):
    two = torch.cat([reference, reference.flip(2)])
    patched, fn = guide(engine, two, 0.5)
    sample(patched, 0, engine["vae"])
    assert len(fn.last_losses) == STEPS and fn.reference.shape == (engine["styleid"].face.model.embedding_dim,)
    blank = torch.full((1, 96, 96, 3), 0.5)
    patched, fn = guide(engine, blank, 0.5)
    assert fn.region is None and not fn.reference_face_found  # centre crop, no exception
    sample(patched, 0, engine["vae"])
    assert len(fn.last_losses) == STEPS


@pytest.mark.parametrize("change, message", [
    ({"scale": float("nan")}, "scale must be a finite number"),
    ({"scale": -1.0}, "scale must be >= 0"),
    ({"reference": torch.zeros(0, 64, 64, 3)}, "reference: the image batch is empty"),
    ({"reference": torch.zeros(64, 64, 3)}, "reference: IMAGE must have 4 dimensions"),
    ({"start_percent": 0.8, "end_percent": 0.2}, "start_percent < end_percent"),
])
def test_bad_inputs_are_one_sentence(engine, reference, change, message):
    from styleid_guidance.integrations.comfyui.nodes_guidance import StyleIDGuidance

    kw = dict(model=engine["model"], vae=engine["vae"], styleid_model=engine["styleid"], reference=reference, scale=0.5,
              start_percent=0.0, end_percent=1.0, every_n_steps=1) | change
    with pytest.raises(StyleIDError, match=message) as err:
        StyleIDGuidance.execute(**kw)
    assert "\n" not in str(err.value)


def test_model_folders_list_models_and_never_download(engine, tmp_path, monkeypatch):
    import folder_paths

    from styleid_guidance.integrations.comfyui import models
    from styleid_guidance.integrations.comfyui.nodes_jojogan import JoJoGANTrain

    (tmp_path / "my-student").mkdir()
    (tmp_path / "arcface_ir50.pth").write_bytes(b"")
    (tmp_path / "detection_Resnet50_Final.pth").write_bytes(b"")  # a detector, not an identity model
    (tmp_path / "notes.txt").write_text("")
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "styleid", ([str(tmp_path)], {""}))
    assert models.styleid_choices() == ["test-tiny", "arcface_ir50.pth", "my-student"]
    assert models.detector_rootpath("retinaface") == str(tmp_path)
    assert models.model_dirs("styleid")[0] == Path(folder_paths.models_dir) / "styleid"  # ComfyUI's default folder first
    with pytest.raises(StyleIDError, match=re.escape(f"model 'gone' not found: put it into {Path(folder_paths.models_dir) / 'styleid'}")):
        models.find_model("styleid", "gone")
    # JoJoGAN's full-size base has no identity model of its own: it asks for one instead of downloading
    with pytest.raises(StyleIDError, match="needs the styleid_model input"):
        JoJoGANTrain.execute(style=torch.rand(1, 64, 64, 3), base="ffhq", id_loss="styleid", iterations=1, seed=0, align=False,
                             preserve_color=False, id_weight=1.0, save_name="")
    m = engine["styleid"]
    assert m.likeness(0.5) is None
    m2 = models.StyleIDModel(m.name, m.kind, m.face, m.center, m.detector, m.precision, Calibration(10.0, -5.0))
    assert m2.likeness(0.5) == pytest.approx(50.0) and m2.likeness(0.9) == pytest.approx(100 / (1 + np.exp(-4.0)))
