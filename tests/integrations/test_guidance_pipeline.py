"""IdentityGuidanceCallback inside real diffusers pipelines (tiny random SD1.5, offline)."""
from __future__ import annotations


import pytest
import torch
from diffusers import (DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler, PNDMScheduler,
                       StableDiffusionPipeline)
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback

from styleid_guidance.integrations import IdentityGuidanceCallback, prepare_guidance_kwargs
from styleid_guidance.tiny.sd import tiny_sd15_components, tiny_taesd
from styleid_guidance import StyleIDEncoder, StyleIDLoss, build_identity_loss
from styleid_guidance.errors import StyleIDError
from styleid_guidance.faces.detection import FaceRegion

STEPS = 6


def _pipe(scheduler=None) -> StableDiffusionPipeline:
    pipe = StableDiffusionPipeline(**tiny_sd15_components())
    if scheduler is not None:
        pipe.scheduler = scheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _run(pipe, cb=None, prompt="a face", guidance_scale=1.0, seed=0, output_type="pt", **kw) -> torch.Tensor:
    if cb is not None:
        kw.update(prepare_guidance_kwargs(pipe, cb))
    out = pipe(prompt=prompt, num_inference_steps=STEPS, height=64, width=64, guidance_scale=guidance_scale,
               generator=torch.Generator().manual_seed(seed), output_type=output_type, **kw)
    return out.images.float()


@pytest.fixture(scope="module")
def loss(astronaut):
    # one real face as reference; the tiny random encoder is the loss being optimised, so "guided output is
    # closer to the reference under this loss" is a deterministic property of the guidance, not of weights
    return StyleIDLoss(StyleIDEncoder.from_open_clip("test-tiny", pretrained=None), reference=astronaut, crop="center")


@pytest.fixture(scope="module")
def pipe():
    return _pipe()


@pytest.fixture(scope="module")
def unguided(pipe):
    return _run(pipe)


def test_scale_zero_and_attach_leave_the_output_bit_identical(loss):
    fresh = _pipe()
    before = _run(fresh)
    cb = IdentityGuidanceCallback(loss, scale=0.0)
    cb.attach(fresh)
    cb.attach(fresh)  # idempotent
    assert fresh._callback_tensor_inputs.count("noise_pred") == 1
    assert "noise_pred" not in StableDiffusionPipeline._callback_tensor_inputs  # the class is untouched
    assert torch.equal(_run(fresh), before)  # attached, called without the callback
    assert torch.equal(_run(fresh, cb), before)  # scale 0


@pytest.mark.parametrize("mode", ["x0", "xt"])
def test_guidance_raises_identity_similarity(pipe, unguided, loss, mode):
    cb = IdentityGuidanceCallback(loss, scale=0.3, mode=mode, end=1.0)
    guided = _run(pipe, cb)
    assert torch.isfinite(guided).all() and guided.shape == unguided.shape
    before, after = loss.similarity(unguided).item(), loss.similarity(guided).item()
    assert after > before + 0.02, (before, after)
    assert len(cb.last_losses) == STEPS
    assert cb.last_losses[-1] < cb.last_losses[0]  # the loss the callback sees falls over the run


def test_tiny_guidance_decoder_steers_what_it_decodes(pipe, loss):
    """A random AutoencoderTiny is no approximation of the random VAE, so judge it by its own decoding."""
    taesd = tiny_taesd()
    cb = IdentityGuidanceCallback(loss, scale=0.3, end=1.0, guidance_decoder=taesd)
    with torch.no_grad():
        plain = cb.decode(pipe, _run(pipe, output_type="latent"))
        steered = cb.decode(pipe, _run(pipe, cb, output_type="latent"))
    assert loss.similarity(steered).item() > loss.similarity(plain).item() + 0.02


def test_scale_controls_the_strength(pipe, unguided, loss):
    sims = [loss.similarity(_run(pipe, IdentityGuidanceCallback(loss, scale=s, end=1.0))).item() for s in (0.05, 0.3)]
    assert loss.similarity(unguided).item() < sims[0] < sims[1]


@pytest.mark.parametrize("scheduler", [EulerDiscreteScheduler, DPMSolverMultistepScheduler])
def test_guidance_with_other_schedulers(loss, scheduler):
    p = _pipe(scheduler)
    base = _run(p)
    guided = _run(p, IdentityGuidanceCallback(loss, scale=0.3, end=1.0))
    assert torch.isfinite(guided).all()
    assert loss.similarity(guided).item() > loss.similarity(base).item() + 0.02


def test_batch_and_cfg_with_one_reference_per_sample(pipe, astronaut, camera):
    pair = StyleIDLoss(StyleIDEncoder.from_open_clip("test-tiny", pretrained=None), reference=[astronaut, camera], crop="center")
    kw = dict(prompt=["a face", "a portrait"], guidance_scale=3.0)
    base = _run(pipe, **kw)
    guided = _run(pipe, IdentityGuidanceCallback(pair, scale=0.3, end=1.0, augment=2), **kw)
    assert guided.shape == (2, 3, 64, 64)
    gain = pair.similarity(guided) - pair.similarity(base)
    assert (gain > 0.01).all(), gain  # each sample moves towards its own reference


def test_window_and_every_select_the_guided_steps(pipe, loss):
    cb = IdentityGuidanceCallback(loss, scale=0.1, start=0.0, end=0.5, every=2)
    _run(pipe, cb)
    assert len(cb.last_losses) == 2  # steps 0 and 2 of 6
    cb = IdentityGuidanceCallback(loss, scale=0.1, end=1.0, repeats=2)
    _run(pipe, cb)
    assert len(cb.last_losses) == STEPS


class _NaNLoss(torch.nn.Module):
    has_reference = True

    def forward(self, images):
        return images.mean(dim=(1, 2, 3)) * float("nan")


def test_nan_loss_skips_with_a_warning_and_keeps_the_image(pipe, unguided):
    cb = IdentityGuidanceCallback(_NaNLoss(), scale=0.3, end=1.0)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        guided = _run(pipe, cb)
    assert torch.isfinite(guided).all()
    assert torch.equal(guided, unguided)  # every update skipped: the image is exactly the unguided one


def test_composes_with_user_callbacks(pipe, loss):
    seen = []

    def user_fn(p, i, t, kw):
        seen.append(kw["latents"].clone())
        return kw

    cb = IdentityGuidanceCallback(loss, scale=0.3, end=1.0)
    kwargs = prepare_guidance_kwargs(pipe, cb, user_fn)
    assert isinstance(kwargs["callback_on_step_end"], MultiPipelineCallbacks)
    assert {"latents", "noise_pred"} <= set(kwargs["callback_on_step_end_tensor_inputs"])
    guided = pipe(prompt="a face", num_inference_steps=STEPS, height=64, width=64, guidance_scale=1.0,
                  generator=torch.Generator().manual_seed(0), output_type="pt", **kwargs).images
    assert len(seen) == STEPS
    # the user's callback runs after guidance: it sees the latents the pipeline then decodes
    final = pipe.vae.decode(seen[-1] / pipe.vae.config.scaling_factor).sample
    torch.testing.assert_close((final / 2 + 0.5).clamp(0, 1), guided, atol=1e-5, rtol=0)

    class Recorder(PipelineCallback):
        tensor_inputs = ["latents"]

        def callback_fn(self, p, i, t, kw):
            seen.append(i)
            return kw

    multi = MultiPipelineCallbacks([Recorder(), cb])  # guidance inside a user-built composition
    seen.clear()
    out = _run(pipe, callback_on_step_end=multi)  # SD reads tensor_inputs from the composition
    assert seen == list(range(STEPS))
    torch.testing.assert_close(out, guided, atol=1e-6, rtol=0)
    # without guidance, user arguments pass through untouched
    assert prepare_guidance_kwargs(pipe, None, user_fn, ["latents"]) == {"callback_on_step_end": user_fn,
                                                                          "callback_on_step_end_tensor_inputs": ["latents"]}
    assert prepare_guidance_kwargs(pipe, None) == {}
    with pytest.raises(StyleIDError, match="IdentityGuidanceCallback"):
        prepare_guidance_kwargs(pipe, loss)


def test_low_precision_denoiser_and_fp16_vae(loss):
    p = _pipe()
    p.unet.to(torch.bfloat16)
    p.text_encoder.to(torch.bfloat16)
    p.vae.to(torch.bfloat16)
    cb = IdentityGuidanceCallback(loss, scale=0.3, end=1.0)
    dtypes = []

    def spy(pp, i, t, kw):
        dtypes.append(kw["latents"].dtype)
        return kw

    out = p(
        prompt="a face", num_inference_steps=3, height=64, width=64, guidance_scale=2.0,
        generator=torch.Generator().manual_seed(0), output_type="pt", **prepare_guidance_kwargs(p, cb, spy)).images
    assert torch.isfinite(out.float()).all()
    assert dtypes == [torch.bfloat16] * 3  # guidance hands back latents in the pipeline's dtype
    # an fp16 VAE that must upcast (SDXL's) decodes the guidance image through an fp32 copy
    p.vae.to(torch.float16)
    p.vae.register_to_config(force_upcast=True)
    x0 = torch.randn(1, 4, 32, 32, requires_grad=True)
    image = cb.decode(p, x0)
    assert image.dtype == torch.float32 and image.shape == (1, 3, 64, 64)
    image.mean().backward()
    assert torch.isfinite(x0.grad).all() and x0.grad.abs().sum() > 0
    assert next(iter(cb._fp32_decoders.values())).dtype == torch.float32


def test_face_region_box_and_bad_settings(pipe, unguided, loss, astronaut):
    box = (8, 8, 56, 56)
    region = FaceRegion.from_box(box, (64, 64))
    # the identity loss owns the face crop: the box is where the face lies in the generated 64-px image
    box_loss = build_identity_loss("styleid", reference=astronaut, model=loss.model, device="cpu", crop="face",
                                   face_region=region, detector="mtcnn")
    cb = IdentityGuidanceCallback(box_loss, scale=0.3, end=1.0)
    guided = _run(pipe, cb)
    # guidance optimises the identity of the boxed face, so judge it there
    face = lambda images: region.crop(images, 64, "styleid")  # noqa: E731
    assert loss.similarity(face(guided)).item() > loss.similarity(face(unguided)).item()
    with pytest.raises(StyleIDError, match="box"):
        FaceRegion.from_box((10, 10, 5, 50), (64, 64))
    with pytest.raises(StyleIDError, match="mode"):
        IdentityGuidanceCallback(loss, mode="pixels")
    with pytest.raises(StyleIDError, match="start"):
        IdentityGuidanceCallback(loss, start=0.8, end=0.2)
    with pytest.raises(StyleIDError, match="reference"):
        IdentityGuidanceCallback(StyleIDLoss(StyleIDEncoder.from_open_clip("test-tiny", pretrained=None), crop="center"))


def test_unsupported_scheduler_is_a_clear_error(loss):
    p = _pipe(PNDMScheduler)
    with pytest.raises(StyleIDError, match="DDIMScheduler"):
        _run(p, IdentityGuidanceCallback(loss))


@pytest.mark.parametrize("scheduler", [DDIMScheduler, EulerDiscreteScheduler])
def test_x0_in_a_running_pipeline_matches_pred_original_sample(loss, scheduler):
    """Inside a real CFG run, latents + noise_pred from the callback give the scheduler's own x0 to 1e-4."""
    from styleid_guidance.integrations import recover_x0

    p = _pipe(scheduler)
    IdentityGuidanceCallback(loss).attach(p)
    step = p.scheduler.step
    originals, recovered = [], []

    def spying_step(*args, **kwargs):
        out = step(*args, **{**kwargs, "return_dict": True})
        originals.append(out.pred_original_sample)
        return (out.prev_sample,)

    p.scheduler.step = spying_step

    def check(pipe, i, t, kw):
        recovered.append(recover_x0(pipe.scheduler, kw["latents"], kw["noise_pred"], t)[0])
        return kw

    _run(p, guidance_scale=4.0, callback_on_step_end=check, callback_on_step_end_tensor_inputs=["latents", "noise_pred"])
    assert len(recovered) == len(originals) == STEPS
    for mine, theirs in zip(recovered, originals):
        torch.testing.assert_close(mine, theirs.float(), atol=1e-4, rtol=0)
