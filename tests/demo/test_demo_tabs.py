"""The demo's tab logic on tiny models (no browser): scores and verdicts, the stylize grid, the JoJoGAN cache."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from styleid_guidance.demo.tabs import jojo, stylize, verify
from styleid_guidance.demo.limits import Limits
from styleid_guidance.demo.weight_sources import frameworks
from styleid_guidance.demo.scoring import THRESHOLDS
from support import REPO, tiny_demo_models
from styleid_guidance.errors import NoFaceError, StyleIDError

FACES = REPO / "examples" / "faces"


@pytest.fixture(scope="module")
def models():
    return tiny_demo_models()


@pytest.fixture
def noise_png(tmp_path):
    path = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (96, 96, 3), dtype=np.uint8)).save(path)
    return path


class Progress:
    def __init__(self):
        self.values: list[float] = []
        self.descs: list[str] = []

    def __call__(self, value, desc=""):
        self.values.append(float(value))
        self.descs.append(desc)


def test_verify_scores_verdicts_and_chart(models, tmp_path, noise_png):
    copy = shutil.copy(FACES / "astronaut.jpg", tmp_path / "same_photo.jpg")
    progress = Progress()
    res = verify.run_verify(models, [FACES / "astronaut.jpg", copy, FACES / "astronaut_painted.jpg"], Limits(), progress)
    assert [r[0] for r in res.rows] == ["same_photo.jpg", "astronaut_painted.jpg"]
    same = res.rows[0]
    # the same picture: cosine 1 under every model, hence "same"
    assert same[1::2] == pytest.approx([1.0, 1.0, 1.0], abs=1e-3) and same[2::2] == ["same"] * 3
    for value, word, model in zip(res.rows[1][1::2], res.rows[1][2::2], ("styleid", "arcface", "clip")):
        assert -1.0 <= value <= 1.0
        assert word == ("same" if value >= THRESHOLDS[model] else "different")
    assert "on the detected faces" in res.message and "astronaut.jpg" in res.message and not res.skipped
    assert res.chart.size[0] > 300 and res.chart.size[1] > 200
    assert progress.values == sorted(progress.values) and all(0 <= v <= 1 for v in progress.values)


def test_verify_with_crop_face_gives_no_verdict_without_a_face_like_the_cli(models, noise_png):
    # a reference without a face: one clear sentence and no verdicts (styleid verify --crop face errors too)
    with pytest.raises(StyleIDError, match=r"reference \(noise.png\): no face found, so no verdicts; .*'center' crop"):
        verify.run_verify(models, [noise_png, FACES / "astronaut.jpg"], Limits())
    # a compared image without a face: left out, named, the others still scored
    res = verify.run_verify(models, [FACES / "astronaut.jpg", noise_png, FACES / "astronaut_sketch.jpg"], Limits())
    assert [r[0] for r in res.rows] == ["astronaut_sketch.jpg"]
    assert len(res.skipped) == 1 and res.skipped[0].startswith("noise.png: no face found, so no verdict")
    assert "⚠️ Left out noise.png: no face found" in res.message
    with pytest.raises(StyleIDError, match="nothing to compare with the reference: noise.png: no face found"):
        verify.run_verify(models, [FACES / "astronaut.jpg", noise_png], Limits())


@pytest.mark.parametrize("crop", ["center", "none"])
def test_verify_whole_image_crops_score_images_without_faces(models, noise_png, crop):
    res = verify.run_verify(models, [noise_png, FACES / "astronaut.jpg", noise_png], Limits(), crop=crop)
    assert [r[0] for r in res.rows] == ["astronaut.jpg", "noise.png (2)"]
    assert res.rows[1][1::2] == pytest.approx([1.0, 1.0, 1.0], abs=1e-3)  # the reference itself: cosine 1
    assert not res.skipped and ("centre crops" if crop == "center" else "whole images") in res.message
    with pytest.raises(StyleIDError, match="crop must be one of face, center, none"):
        verify.run_verify(models, [noise_png, noise_png], Limits(), crop="eyes")


def test_verify_drops_only_the_bad_file_and_says_so(models, tmp_path):
    big = tmp_path / "big.jpg"  # 600 x 600 px of noise: ~1 MB whatever the name says
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (600, 600, 3), dtype=np.uint8)).save(big, format="PNG")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    limits = Limits(max_upload_mb=0.5)
    small = [FACES / "astronaut.jpg", FACES / "astronaut_sketch.jpg"]
    assert all(p.stat().st_size < 0.5 * 2**20 < big.stat().st_size for p in small)
    res = verify.run_verify(models, [small[0], big, small[1], empty], limits)
    assert [r[0] for r in res.rows] == ["astronaut_sketch.jpg"]
    assert [s.split(":")[0] for s in res.skipped] == ["image 2 (big.jpg)", "image 4 (empty.png)"]
    assert "MB upload limit" in res.skipped[0] and "empty" in res.skipped[1]
    assert "⚠️ Left out image 2 (big.jpg)" in res.message and str(tmp_path) not in res.message
    # the reference itself unreadable: nothing to compare with, said in one sentence
    with pytest.raises(StyleIDError, match=r"reference \(image 1\) \(empty.png\): the file is empty.*the first image is the reference"):
        verify.run_verify(models, [empty, *small], limits)


def test_verify_previews_are_thumbnails_of_what_the_server_read(tmp_path):
    notes = tmp_path / "notes.png"
    notes.write_text("not an image")
    gallery, skipped = verify.previews([FACES / "astronaut.jpg", notes, FACES / "astronaut_sketch.jpg"], Limits())
    assert [caption for _, caption in gallery] == ["reference: astronaut.jpg", "astronaut_sketch.jpg"]
    assert all(max(im.size) == 256 for im, _ in gallery)
    assert skipped == ["image 2 (notes.png): not a readable image; upload a PNG, JPEG or WebP file"]
    assert verify.previews(None, Limits()) == ([], [])


def test_verify_needs_two_to_eight_images(models):
    with pytest.raises(StyleIDError, match="at least two images"):
        verify.run_verify(models, [FACES / "astronaut.jpg"], Limits())
    with pytest.raises(StyleIDError, match="at most 8"):
        verify.run_verify(models, [FACES / "astronaut.jpg"] * 9, Limits())


class FakeStylizer:
    """Records every call; returns the input face at 64 px (so the scoring path sees a real face)."""

    def __init__(self):
        self.calls = []

    def __call__(self, face, prompt, strength_level=4, identity_guidance=None, seed=0, **overrides):
        self.calls.append(dict(prompt=prompt, level=strength_level, guidance=identity_guidance, seed=seed, overrides=overrides))
        return face.resize((64, 64))


def test_stylize_grid_same_seed_guidance_per_row_and_unavailable_column(models, monkeypatch):
    from styleid_guidance.integrations import IdentityGuidanceCallback
    from styleid_guidance.pipelines.presets import STYLE_PROMPTS

    fakes = {"ip_adapter": FakeStylizer(), "infiniteyou": FakeStylizer(), "kontext": FakeStylizer()}

    def stylizer(framework):
        if framework not in fakes:
            raise StyleIDError("InstantID is unavailable: weights not here (test)")
        return fakes[framework]

    monkeypatch.setattr(models, "stylizer", stylizer)
    progress = Progress()
    res = stylize.run_stylize(models, FACES / "astronaut.jpg", "ghibli", "", 3, 11, 0.2, Limits(), progress)
    assert progress.values == sorted(progress.values) and 0 <= progress.values[0] and progress.values[-1] <= 1
    assert sum("StyleID-guided" in d for d in progress.descs) == 3  # one step per cell that ran
    for fake in fakes.values():
        assert [c["seed"] for c in fake.calls] == [11, 11, 11]
        assert {c["prompt"] for c in fake.calls} == {STYLE_PROMPTS["ghibli"]} and {c["level"] for c in fake.calls} == {3}
        assert all(c["overrides"] == models.call_overrides for c in fake.calls)
        unguided, arcface, styleid = (c["guidance"] for c in fake.calls)
        assert unguided is None
        assert isinstance(arcface, IdentityGuidanceCallback) and arcface.identity_loss.name == "arcface"
        assert isinstance(styleid, IdentityGuidanceCallback) and styleid.identity_loss.name == "styleid"
        assert styleid.config.scale == pytest.approx(0.2) and styleid.identity_loss.has_reference
    assert [(r[0], r[1]) for r in res.rows] == [(fw, row) for fw in ("IP-Adapter", "InfiniteYou", "FLUX.1 Kontext")
                                                for row in ("unguided", "ArcFace-guided", "StyleID-guided")]
    assert all(-1 <= v <= 1 for r in res.rows for v in r[2:])
    # 4 columns of 256-px cells (InstantID's says why it is missing) plus labels, 3 rows with captions
    assert res.grid.size[0] > 4 * 256 and res.grid.size[1] > 3 * 256
    assert "studio Ghibli" in res.message and "seed 11" in res.message


def test_stylize_user_mistakes(models, noise_png):
    with pytest.raises(NoFaceError, match=r"face photo \(noise.png\): no face found"):
        stylize.run_stylize(models, noise_png, "pixar", "", 4, 0, 0.05, Limits())
    with pytest.raises(StyleIDError, match="'custom' needs a prompt"):
        stylize.run_stylize(models, FACES / "astronaut.jpg", "custom", "  ", 4, 0, 0.05, Limits())
    with pytest.raises(StyleIDError, match="strength level must be a whole number from 1 to 7"):
        stylize.run_stylize(models, FACES / "astronaut.jpg", "pixar", "", 8, 0, 0.05, Limits())
    assert stylize.resolve_prompt("custom", " a bronze statue ") == "a bronze statue"


class FakeJoJoGAN:
    def __init__(self):
        self.finetuned = []

    def finetune(self, style_images, identity_loss="styleid", id_weight=1.0, num_iter=300, preserve_color=False, seed=0,
                 progress=None, show_progress=True, **kw):
        self.finetuned.append((identity_loss.name, num_iter, seed))
        for i in range(num_iter):
            progress(i, num_iter, {"style": 1.0 / (i + 1)})
        return object()

    def stylize(self, face, generator):
        return face.resize((64, 64))


def test_jojogan_trains_both_then_reuses_the_cache(models, monkeypatch, tmp_path):
    fake = FakeJoJoGAN()
    monkeypatch.setattr(models, "jojogan", lambda: fake)
    cache = jojo.GeneratorCache()
    style = FACES / "astronaut_painted.jpg"
    progress = Progress()
    res = jojo.run_jojogan(models, style, FACES / "astronaut.jpg", 3, 1.0, False, 0, Limits(), cache, progress)
    assert res.trained == 2 and fake.finetuned == [("arcface", 3, 0), ("styleid", 3, 0)]
    assert [r[0] for r in res.rows] == ["ArcFace-trained", "StyleID-trained"] and all(r[-1].startswith("trained") for r in res.rows)
    assert progress.values == sorted(progress.values) and progress.values[-1] <= 1.0
    assert any("iteration 3/3" in d for d in progress.descs)

    # same reference bytes (another file name) and settings, another face: no training
    again = jojo.run_jojogan(models, shutil.copy(style, tmp_path / "ref.jpg"), FACES / "astronaut_sketch.jpg", 3, 1.0, False, 0,
                             Limits(), cache)
    assert again.trained == 0 and len(fake.finetuned) == 2 and {r[-1] for r in again.rows} == {"cached"}
    # other settings: train again
    assert jojo.run_jojogan(models, style, FACES / "astronaut.jpg", 3, 1.0, True, 0, Limits(), cache).trained == 2
    with pytest.raises(StyleIDError, match="iterations must be from 1 to 2000"):
        jojo.run_jojogan(models, style, FACES / "astronaut.jpg", 0, 1.0, False, 0, Limits(), cache)


def test_jojogan_refuses_a_face_photo_without_a_face_before_training(models, monkeypatch, noise_png):
    fake = FakeJoJoGAN()
    monkeypatch.setattr(models, "jojogan", lambda: fake)
    with pytest.raises(NoFaceError, match=r"face photo \(noise.png\): no face found"):
        jojo.run_jojogan(models, FACES / "astronaut_painted.jpg", noise_png, 3, 1.0, False, 0, Limits(), jojo.GeneratorCache())
    assert fake.finetuned == []  # minutes of training not spent on a photo that cannot be stylized


def test_generator_cache_is_lru():
    cache = jojo.GeneratorCache(size=2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3 and len(cache) == 2


def test_every_framework_has_a_tiny_stylizer(models):
    # the contract the tiny profile relies on: each framework module imports and offers .tiny()
    for fw in frameworks():
        assert callable(getattr(models._stylizer_class(fw), "tiny"))


def test_face_detection_is_downscaled_then_mapped_back_and_remembered(models):
    photo = Image.open(FACES / "astronaut.jpg").convert("RGB")  # 512 px: detected on a 320-px copy
    faces = models.detect_faces(photo)
    assert len(faces) >= 1
    eyes = faces[0].landmarks[:2]
    # astronaut.jpg: the eyes sit near (153, 76) and (186, 78) in full-size pixels
    assert np.allclose(eyes, [[153, 76], [186, 78]], atol=6), eyes
    assert models.detect_faces(photo) is faces
