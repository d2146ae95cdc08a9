"""What reads the stylizer registry: a stylizer registered here (one `register_stylizer` call, no other file
edited) is offered by `styleid generate --methods` and runs there, and it is a column of the demo's Stylize
tab. And a data folder written by `generate` before the registry existed still resumes."""
from __future__ import annotations

import json
import shutil
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from styleid_guidance.cli import run
from styleid_guidance.errors import StyleIDError
from styleid_guidance.pipelines import STYLIZERS, register_stylizer, stylizer_names
from styleid_guidance.pipelines.presets import STYLE_PROMPTS
from support import REPO, DATA

DATA = DATA
FACES = REPO / "examples" / "faces"


def fake_preset(level: int) -> dict:
    from styleid_guidance.pipelines.presets import ip_adapter_preset

    ip_adapter_preset(level)  # the same level check as the real ones
    return {"strength": level / 7, "num_inference_steps": 3}


class FakeStylizer:
    """A stylizer with no model: the photo tinted by the level and overlaid with seeded noise, one step callback per
    "step". Enough to show the consumers run whatever the registry holds."""

    made: list[dict] = []

    def __init__(self, size: int = 24, call_defaults: dict | None = None):
        self.pipe = types.SimpleNamespace()
        self.face_embedder = types.SimpleNamespace(detector=None, model_rootpath=None)
        self.size = size
        self.call_defaults = dict(call_defaults or {})

    @classmethod
    def tiny(cls, device: str = "cpu") -> "FakeStylizer":
        return cls(size=24, call_defaults={"num_inference_steps": 2})

    @classmethod
    def from_pretrained(cls, *, base_model: str = "example/fake-model", device: str | None = None, torch_dtype=None,
                        detector: str | None = None) -> "FakeStylizer":
        raise StyleIDError(f"{base_model}: the fake stylizer has no real weights")

    def call_settings(self, strength_level: int, face=None) -> dict:
        return {**fake_preset(strength_level), "height": self.size, "width": self.size, **self.call_defaults}

    def __call__(self, face, prompt, strength_level=4, identity_guidance=None, seed=0, **overrides):
        settings = {**self.call_settings(strength_level), **overrides}
        callback = settings.pop("callback_on_step_end", None)
        for step in range(settings["num_inference_steps"]):
            if callback is not None:
                callback(self.pipe, step, 1000 - step, {})
        photo = np.asarray(face.convert("RGB").resize((settings["width"], settings["height"])), dtype=np.float32)
        noise = np.random.default_rng(seed).uniform(0, 255, photo.shape)
        out = (1 - settings["strength"]) * photo + settings["strength"] * noise
        FakeStylizer.made.append({"prompt": prompt, "level": strength_level, "seed": seed, "guided": identity_guidance is not None})
        return Image.fromarray(out.clip(0, 255).astype(np.uint8))


@pytest.fixture
def fake():
    before = dict(STYLIZERS)
    FakeStylizer.made = []
    entry = register_stylizer("fake_method", FakeStylizer, label="Fake method", models={"base_model": "example/fake-model"},
                              preset=fake_preset, description="a test stylizer")
    yield entry
    STYLIZERS.clear()
    STYLIZERS.update(before)


@pytest.fixture(scope="module")
def faces(tmp_path_factory, astronaut) -> Path:
    folder = tmp_path_factory.mktemp("faces")
    astronaut.resize((160, 160)).save(folder / "ann.png")
    return folder


def test_generate_offers_and_runs_a_registered_stylizer(fake, faces, tmp_path, capsys):
    from styleid_guidance.perception.manifest import read_records

    assert run(["generate", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "ip_adapter, instantid, infiniteyou, kontext, fake_method" in help_text
    assert "fake_method = a test stylizer" in help_text and "fake_method 3" in help_text  # its steps, from its preset
    out = tmp_path / "out"
    assert run(["generate", str(faces), "-o", str(out), "--tiny", "--methods", "fake_method", "--styles", "pixar", "orc",
                "--levels", "2,6", "--no-progress"]) == 0
    records = {p: r for p, r in read_records(out).items() if r["kind"] == "stylized"}
    assert sorted(records) == sorted(f"fake_method/{s}/ann_{lv}.png" for s in ("pixar", "orc") for lv in (2, 6))
    for path, r in records.items():
        assert r["models"] == {"class": "FakeStylizer", "weights": "tiny-random (styleid_guidance.tiny, seeded)"}
        assert r["params"] == {"strength": r["level"] / 7, "num_inference_steps": 2, "height": 24, "width": 24}
        with Image.open(out / path) as im:
            assert im.size == (24, 24)
    assert sorted((m["prompt"], m["level"]) for m in FakeStylizer.made) == sorted(
        (STYLE_PROMPTS[s], lv) for s in ("pixar", "orc") for lv in (2, 6))
    # a rerun finds everything done; not a paper method, so not in the default set
    assert run(["generate", str(faces), "-o", str(out), "--tiny", "--methods", "fake_method", "--styles", "pixar", "orc",
                "--levels", "2,6", "--no-progress"]) == 0
    assert "0 new record(s)" in capsys.readouterr().err
    from styleid_guidance.perception.generate.models import model_ids
    from styleid_guidance.perception.layout import paper_methods

    assert "fake_method" not in paper_methods()
    assert model_ids("fake_method", tiny=False) == {"class": "FakeStylizer", "base_model": "example/fake-model"}


def test_a_video_stylizer_is_not_offered_where_images_are_made(fake):
    from styleid_guidance.demo.weight_sources import frameworks
    from styleid_guidance.perception.layout import all_methods, parse_methods

    register_stylizer("fake_video", FakeStylizer, label="Fake video", models={"base_model": "example/v"}, preset=fake_preset,
                      output="video")
    for video in ("fake_video", "wan_video"):  # a registered one and the built-in one
        assert video not in all_methods() and video not in frameworks()
    assert stylizer_names("video")[-1] == "fake_video" and "fake_video" not in stylizer_names("image")
    assert stylizer_names()[-2:] == ("fake_method", "fake_video")
    with pytest.raises(StyleIDError, match="fake_video make\\(s\\) videos; generate writes images"):
        parse_methods("ip_adapter,fake_video")


def test_the_demo_shows_a_registered_stylizer(fake, monkeypatch):
    from styleid_guidance.demo.tabs import stylize
    from styleid_guidance.demo.limits import Limits
    from styleid_guidance.demo.profiles import Models
    from styleid_guidance.demo.weight_sources import frameworks, parse_weight_overrides, profile_frameworks

    assert frameworks()[-1] == "fake_method"
    assert "fake_method" in profile_frameworks("tiny") and "fake_method" in profile_frameworks("flux")
    assert "fake_method" not in profile_frameworks("sdxl")  # its base family defaults to the heaviest
    assert parse_weight_overrides(["fake_method.base_model=me/other"]) == {"fake_method.base_model": "me/other"}
    models = Models("tiny", device="cpu")
    torch.manual_seed(0)
    status = {a.label: a.reason for a in models.availability()}
    assert "Fake method" in status and status["Fake method"] is None
    real = Models("sdxl", device="cpu")
    assert "not part of the sdxl profile (launch with --profile flux" in {a.label: a.reason for a in real.availability()}["Fake method"]
    # the Stylize tab with the fake as its only column: every guidance row runs it, same seed
    for name in [n for n in STYLIZERS if n != "fake_method"]:
        monkeypatch.delitem(STYLIZERS, name)
    res = stylize.run_stylize(models, FACES / "astronaut.jpg", "pixar", "", 5, 3, 0.1, Limits())
    assert [(r[0], r[1]) for r in res.rows] == [("Fake method", row) for row in ("unguided", "ArcFace-guided", "StyleID-guided")]
    assert [(m["level"], m["seed"], m["guided"]) for m in FakeStylizer.made] == [(5, 3, False), (5, 3, True), (5, 3, True)]
    assert res.grid.size[0] > 256 and res.grid.size[1] > 3 * 256


# --------------------------------------------------------------------------- data folders from before the registry

# The model record `generate` wrote before the registry, from each from_pretrained's keyword defaults (printed by
# `perception.generate.models.model_ids(method, tiny=False)` at commit 54d2c07). A folder made with real weights
# resumes only if today's record is the same.
RECORDS_BEFORE_REGISTRY = {
    "ip_adapter": {"class": "IPAdapterStylizer", "base_model": "SG161222/Realistic_Vision_V4.0_noVAE",
                   "ip_adapter": "h94/IP-Adapter-FaceID", "weight_name": "ip-adapter-faceid-plusv2_sd15.bin",
                   "image_encoder": "laion/CLIP-ViT-H-14-laion2B-s32B-b79K", "vae": "stabilityai/sd-vae-ft-mse",
                   "face_model": "buffalo_l"},
    "instantid": {"class": "InstantIDStylizer", "base_model": "wangqixun/YamerMIX_v8", "instantid": "InstantX/InstantID",
                  "face_model": "antelopev2"},
    "infiniteyou": {"class": "InfiniteYouStylizer", "base_model": "black-forest-labs/FLUX.1-dev",
                    "infiniteyou": "ByteDance/InfiniteYou", "model_version": "aes_stage2", "infu_flux_version": "v1.0"},
    "kontext": {"class": "KontextStylizer", "base_model": "black-forest-labs/FLUX.1-Kontext-dev"},
}


def test_the_model_record_is_the_one_written_before_the_registry():
    from styleid_guidance.perception.generate.models import model_ids

    for method, record in RECORDS_BEFORE_REGISTRY.items():
        assert model_ids(method, tiny=False) == record, method
        assert json.loads(json.dumps(model_ids(method, tiny=False))) == record  # as the manifest stores it


def test_a_folder_written_before_the_registry_resumes(tmp_path, capsys):
    """tests/data/generate_before_registry/out was written at commit 54d2c07 by
    `styleid generate faces -o out --tiny --methods ip_adapter,instantid,infiniteyou,kontext --styles pixar --levels 3
    --steps 1` (faces/ann.png: examples/faces/astronaut.jpg at 160 px, the bytes of out/p3/ann.png)."""
    from styleid_guidance.perception.manifest import MANIFEST, read_records

    out = tmp_path / "out"
    shutil.copytree(DATA / "generate_before_registry" / "out", out)
    (tmp_path / "faces").mkdir()
    shutil.copy(out / "p3" / "ann.png", tmp_path / "faces" / "ann.png")
    before = read_records(out)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    argv = ["generate", str(tmp_path / "faces"), "-o", str(out), "--tiny", "--methods", "ip_adapter,instantid,infiniteyou,kontext",
            "--styles", "pixar", "--levels", "3", "--steps", "1", "--no-progress"]
    assert run(argv) == 0
    err = capsys.readouterr().err
    assert "4 of 4 planned image(s) on disk, 0 new record(s)" in err and "0 made" in err, err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == stamps  # nothing remade
    assert read_records(out) == before
    # and a changed request is still refused: the comparison did run
    assert run([*argv[:-2], "2", "--no-progress"]) == 2
    assert "made earlier with other settings (overrides differ" in capsys.readouterr().err
    assert (out / MANIFEST).is_file()
