"""FLUX.1 Kontext: identity guidance on diffusers' unmodified FluxKontextPipeline, and KontextStylizer (tiny, offline)."""
from __future__ import annotations

import pytest
import torch
from diffusers import FluxKontextPipeline, FluxPipeline
from PIL import Image

from styleid_guidance import build_identity_loss
from styleid_guidance.errors import NoFaceError, StyleIDError
from styleid_guidance.identity_losses import StyleIDLoss
from styleid_guidance.integrations import IdentityGuidanceCallback
from styleid_guidance.integrations.hooks import expose_noise_pred
from styleid_guidance.integrations.x0_estimate import recover_x0
from styleid_guidance.pipelines.kontext import KontextStylizer, output_size
from styleid_guidance.pipelines.presets import STYLE_PROMPTS, kontext_instruction, kontext_preset
from styleid_guidance.tiny.kontext import SIZE, TINY_CALL, tiny_kontext_components, tiny_kontext_pipeline
from support import assert_example_saves_a_grid, assert_tiny_leaves_the_global_rng_alone

STEPS = 4
SEEDS = (0, 1, 2)
GENERATED = (SIZE // 2) ** 2  # packed tokens of a 32-px output (vae factor 1, 2x2 packing)


@pytest.fixture(scope="module")
def pipe():
    return tiny_kontext_pipeline()


@pytest.fixture(scope="module")
def photo(astronaut):
    return astronaut.resize((SIZE, SIZE), Image.LANCZOS)


@pytest.fixture
def loss(tiny_encoder, astronaut):
    return StyleIDLoss(tiny_encoder, reference=astronaut, crop="center")


def _run(pipe, photo, cb=None, seed=0, height=SIZE, width=SIZE, **kw):
    """The README's recipe on the unmodified pipeline: attach once, pass the callback and its tensor inputs."""
    if cb is not None:
        cb.attach(pipe)
        kw.update(callback_on_step_end=cb, callback_on_step_end_tensor_inputs=cb.tensor_inputs)
    call = {**TINY_CALL, "max_area": height * width}
    return pipe(image=photo, prompt="Turn this photo into a Pixar character", num_inference_steps=STEPS, height=height,
                width=width, output_type="pt", generator=torch.Generator().manual_seed(seed), **call, **kw).images


@pytest.mark.parametrize("mode", ["x0", "xt"])
def test_guidance_raises_similarity_on_every_seed_and_scale_zero_is_exact(pipe, photo, loss, mode):
    assert type(pipe) is FluxKontextPipeline  # diffusers' own class, not a subclass
    for seed in SEEDS:
        plain = _run(pipe, photo, seed=seed)
        zero = _run(pipe, photo, IdentityGuidanceCallback(loss, scale=0.0, mode=mode), seed=seed)
        assert torch.equal(zero, plain), seed
        guided = _run(pipe, photo, IdentityGuidanceCallback(loss, scale=0.3, mode=mode, end=1.0), seed=seed)
        with torch.no_grad():
            before, after = float(loss.similarity(plain)), float(loss.similarity(guided))
        assert after > before + 0.02, (mode, seed, before, after)
    assert torch.equal(_run(pipe, photo, seed=SEEDS[-1]), plain)  # the attached hooks change nothing unguided


def _grab_transformer_inputs(pipe, store):
    def hook(module, args, kwargs):
        store.append(kwargs["hidden_states"].detach().clone())
    return pipe.transformer.register_forward_pre_hook(hook, with_kwargs=True)


@pytest.mark.parametrize("mode", ["x0", "xt"])
def test_reference_image_tokens_enter_the_transformer_unchanged(pipe, photo, loss, mode):
    plain_in, guided_in = [], []
    handle = _grab_transformer_inputs(pipe, plain_in)
    try:
        _run(pipe, photo)
    finally:
        handle.remove()
    handle = _grab_transformer_inputs(pipe, guided_in)
    try:
        _run(pipe, photo, IdentityGuidanceCallback(loss, scale=0.3, mode=mode, end=1.0))
    finally:
        handle.remove()
    assert len(plain_in) == STEPS and plain_in[0].shape == (1, 2 * GENERATED, 4)
    # x_t mode adds its own transformer call per guided step: pipeline call, then the guidance re-run
    assert len(guided_in) == (2 * STEPS if mode == "xt" else STEPS)
    reference = plain_in[0][:, GENERATED:]
    for i, x in enumerate(guided_in):
        assert x.shape == plain_in[0].shape
        assert torch.equal(x[:, GENERATED:], reference), i  # bit for bit, every call
    # ... while guidance did move the generated tokens (from the second step on)
    assert not torch.equal(guided_in[-1][:, :GENERATED], plain_in[-1][:, :GENERATED])


def test_x0_is_the_pipelines_own_flow_matching_estimate(pipe, photo):
    """In the callback, x0 = latents − σ_next·v equals x_t − σ_t·v on the step's transformer input."""
    inputs, checked = [], []
    handle = _grab_transformer_inputs(pipe, inputs)

    def check(p, i, t, kw):
        x0, factor = recover_x0(p.scheduler, kw["latents"], kw["noise_pred"], t)
        sigma = float(p.scheduler.sigmas[p.scheduler.step_index - 1])
        x_t = inputs[-1][:, :GENERATED].float()
        torch.testing.assert_close(x0, x_t - sigma * kw["noise_pred"].float(), atol=1e-5, rtol=1e-5)
        assert factor == pytest.approx(1 - float(p.scheduler.sigmas[p.scheduler.step_index]))
        checked.append(i)
        return kw

    expose_noise_pred(pipe)  # what attach() does for the callback
    try:
        _run(pipe, photo, callback_on_step_end=check, callback_on_step_end_tensor_inputs=["latents", "noise_pred"])
    finally:
        handle.remove()
    assert checked == list(range(STEPS))


@pytest.mark.parametrize("mode", ["x0", "xt"])
def test_output_of_another_shape_than_the_reference(pipe, photo, loss, mode):
    """The image tokens' ids (another grid here) must not be mistaken for the generated grid."""
    wide = photo.resize((48, 32))
    plain = _run(pipe, wide, height=48, width=32)
    guided = _run(pipe, wide, IdentityGuidanceCallback(loss, scale=0.3, mode=mode, end=1.0), height=48, width=32)
    assert plain.shape == guided.shape == (1, 3, 48, 32)
    assert float(loss.similarity(guided)) > float(loss.similarity(plain)) + 0.02


def test_true_cfg_x0_works_and_xt_refuses(pipe, photo, loss):
    cfg = dict(true_cfg_scale=2.0, negative_prompt="blurry")
    plain = _run(pipe, photo, **cfg)
    guided = _run(pipe, photo, IdentityGuidanceCallback(loss, scale=0.3, end=1.0), **cfg)
    assert float(loss.similarity(guided)) > float(loss.similarity(plain)) + 0.02
    with pytest.raises(StyleIDError, match=r"x_t guidance saw 2 denoiser calls in one step \(true CFG.*use mode='x0'"):
        _run(pipe, photo, IdentityGuidanceCallback(loss, scale=0.3, mode="xt"), **cfg)
    # and the count does not leak into the next plain-CFG x_t run
    _run(pipe, photo, IdentityGuidanceCallback(loss, scale=0.3, mode="xt"))


# -- KontextStylizer ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stylizer():
    return KontextStylizer.tiny()


def test_strength_levels_move_guidance_and_the_identity_clause(stylizer, astronaut, monkeypatch):
    assert [kontext_preset(level)["guidance_scale"] for level in range(1, 8)] == [1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0]
    words = [len(kontext_instruction(STYLE_PROMPTS["pixar"], level)) for level in range(1, 8)]
    assert words == sorted(words, reverse=True) and words[0] > words[-1]  # less identity wording as the level grows
    assert kontext_instruction(STYLE_PROMPTS["pixar"], 7) == "Turn this photo into a portrait of a Pixar character"
    assert kontext_instruction("Make it a mosaic.", 7) == "Make it a mosaic"  # a custom instruction is kept
    seen = []
    monkeypatch.setattr(type(stylizer.pipe), "__call__", lambda self, **kw: seen.append(kw) or type("R", (), {"images": [None]}))
    for level in (1, 7):
        stylizer(astronaut, STYLE_PROMPTS["pixar"], strength_level=level)
    assert [kw["guidance_scale"] for kw in seen] == [1.0, 4.0]
    assert "keeping the person's face" in seen[0]["prompt"] and "keeping" not in seen[1]["prompt"]
    assert (seen[0]["height"], seen[0]["width"], seen[0]["max_area"], seen[0]["num_inference_steps"]) == (SIZE, SIZE, SIZE * SIZE, 28)
    assert seen[0]["image"].size == (SIZE, SIZE)  # the whole photo, at the output size (its layout keeps the face in place)
    with pytest.raises(StyleIDError, match="strength_level must be an integer from 1 to 7"):
        stylizer(astronaut, "Caricature", strength_level=8)


def test_stylizer_tiny_guided_end_to_end(stylizer, astronaut, tiny_encoder):
    loss = build_identity_loss("styleid", reference=astronaut, model=tiny_encoder, crop="center")
    plain = stylizer(astronaut, STYLE_PROMPTS["orc"], strength_level=5, num_inference_steps=3)
    assert isinstance(plain, Image.Image) and plain.size == (SIZE, SIZE)
    zero = stylizer(astronaut, STYLE_PROMPTS["orc"], strength_level=5, num_inference_steps=3,
                    identity_guidance=IdentityGuidanceCallback(loss, scale=0.0))
    assert zero.tobytes() == plain.tobytes()
    guided = stylizer(astronaut, STYLE_PROMPTS["orc"], strength_level=5, num_inference_steps=3,
                      identity_guidance=IdentityGuidanceCallback(loss, scale=0.3, end=1.0))
    assert float(loss.similarity([guided])) > float(loss.similarity([plain])) + 0.02
    assert output_size((640, 480), 1024, 16) == (1168, 880)  # the photo's aspect at ~1024², multiples of 16


def test_bad_references_and_pipelines_are_one_line_errors(stylizer, tiny_encoder, astronaut):
    blank = Image.new("RGB", (128, 128), "white")
    with pytest.raises(NoFaceError) as err:
        build_identity_loss("styleid", reference=blank, model=tiny_encoder, detector="mtcnn")
    assert "--crop center" in err.value.for_cli() and "\n" not in str(err.value)
    with pytest.raises(NoFaceError, match="face image: no face found"):
        stylizer(blank, "Caricature")
    # the guidance reference and the Kontext photo alike: too small, or not an RGB image
    with pytest.raises(StyleIDError, match="8x8 px, too small"):
        build_identity_loss("styleid", reference=Image.new("RGB", (8, 8)), model=tiny_encoder, crop="center")
    with pytest.raises(StyleIDError, match=r"must be \[B,3,H,W\] or \[3,H,W\], got \(1, 1, 64, 64\)"):
        build_identity_loss("styleid", reference=torch.rand(1, 1, 64, 64), model=tiny_encoder, crop="center")
    with pytest.raises(StyleIDError, match="too small"):
        stylizer(Image.new("RGB", (8, 8)), "Caricature")
    with pytest.raises(StyleIDError, match=r"image tensor must be \[B,3,H,W\]"):
        stylizer(torch.rand(1, 4, 64, 64), "Caricature")  # RGBA-like / latent-shaped tensors are not photos
    with pytest.raises(StyleIDError, match="multiples of 2"):
        stylizer(astronaut, "Caricature", width=33)
    flux = FluxPipeline(**{k: v for k, v in tiny_kontext_components().items() if k not in ("image_encoder", "feature_extractor")})
    with pytest.raises(StyleIDError, match="needs a diffusers FluxKontextPipeline .* got FluxPipeline"):
        KontextStylizer(flux, stylizer.face_embedder)


def test_from_pretrained_local_folder_hub_id_and_wrong_weights(tmp_path, stylizer, astronaut, monkeypatch):
    components = tiny_kontext_components()
    FluxKontextPipeline(**components).save_pretrained(tmp_path / "kontext")
    loaded = KontextStylizer.from_pretrained(str(tmp_path / "kontext"), detector="mtcnn", device="cpu",
                                             torch_dtype=torch.float32, size=SIZE)
    loaded.pipe.set_progress_bar_config(disable=True)
    loaded.face_embedder = stylizer.face_embedder
    kw = dict(strength_level=3, num_inference_steps=2, **stylizer.call_defaults)
    assert loaded(astronaut, "Caricature", **kw).tobytes() == stylizer(astronaut, "Caricature", **kw).tobytes()
    FluxPipeline(**{k: v for k, v in components.items() if k not in ("image_encoder", "feature_extractor")}).save_pretrained(tmp_path / "flux")
    with pytest.raises(StyleIDError, match="holds a FluxPipeline .* not a FluxKontextPipeline"):
        KontextStylizer.from_pretrained(str(tmp_path / "flux"), detector="mtcnn", device="cpu")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(StyleIDError, match="could not be loaded .* check base_model"):
        KontextStylizer.from_pretrained("nobody/not-a-kontext-model", detector="mtcnn", device="cpu")


def test_generate_makes_kontext_images_on_request_only(tmp_path, astronaut):
    import json

    from styleid_guidance.cli import run
    from styleid_guidance.perception.layout import parse_methods

    assert "kontext" not in parse_methods("ip_adapter,instantid,infiniteyou")  # the paper's three stay the default
    faces = tmp_path / "faces"
    faces.mkdir()
    astronaut.resize((256, 256)).save(faces / "astro.png")  # smaller: the source check and detection are most of the time
    out = tmp_path / "out"
    argv = ["generate", str(faces), "-o", str(out), "--tiny", "--steps", "2", "--methods", "kontext", "--styles", "pixar",
            "--levels", "2,6", "--detector", "mtcnn", "--no-progress"]
    assert run(argv) == 0
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    made = sorted((r["path"], r["params"]["guidance_scale"]) for r in records if r.get("method") == "kontext")
    assert made == [("kontext/pixar/astro_2.png", 1.5), ("kontext/pixar/astro_6.png", 3.5)]
    assert Image.open(out / "kontext/pixar/astro_2.png").size == (SIZE, SIZE)


def test_example_tiny_saves_an_annotated_grid(tmp_path):
    from examples.kontext_guided import main

    assert_example_saves_a_grid(main, tmp_path / "grid.png")  # reference, unguided, guided (+ captions)


def test_tiny_leaves_the_global_rng_alone():
    assert_tiny_leaves_the_global_rng_alone(lambda: KontextStylizer.tiny())
