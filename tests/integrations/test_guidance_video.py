"""Identity guidance on video latents [B, C, F, h, w]: AnimateDiff (per-frame VAE, DDIM) and Wan 2.1 (causal,
4x temporally compressed VAE, flow matching), tiny random pipelines from configs, offline."""
from __future__ import annotations

import math

import pytest
import torch
from styleid_guidance.integrations import (
    DEFAULT_SCALES,
    IdentityGuidanceCallback,
    prepare_guidance_kwargs,
    recover_x0,
)
from styleid_guidance.integrations.defaults import guidance_family
from styleid_guidance.integrations.video import (
    decode_video_frames,
    frame_order,
    frames_for_step,
)

from styleid_guidance import StyleIDEncoder, StyleIDLoss
from styleid_guidance.errors import StyleIDError
from styleid_guidance.tiny.video import tiny_animatediff, tiny_prompt_embeds, tiny_wan

STEPS = 4
AD_FRAMES = 6  # AnimateDiff: 6 latent frames = 6 video frames
WAN_FRAMES = 13  # Wan: 13 video frames = 4 latent frames (1 + 3 x 4)
WAN_LATENT_FRAMES = 4
PER_STEP = 2  # 4 steps x 2 >= 6 and >= 4: every latent frame is guided
_UNGUIDED: dict = {}


@pytest.fixture(scope="module")
def loss(astronaut):
    return StyleIDLoss(StyleIDEncoder.from_open_clip("test-tiny", pretrained=None), reference=astronaut, crop="center")


@pytest.fixture(scope="module")
def animatediff():
    return tiny_animatediff()


@pytest.fixture(scope="module")
def wan():
    return tiny_wan()


@pytest.fixture(scope="module")
def wan_i2v():
    return tiny_wan(image_to_video=True)


def _run(pipe, cb=None, seed=0, output_type="pt", image=None, batch=1, **kw) -> torch.Tensor:
    """Frames [B, F, 3, H, W] in [0, 1] (or the latents); `batch` clips of the one prompt."""
    if cb is not None:
        kw.update(prepare_guidance_kwargs(pipe, cb, kw.pop("callback_on_step_end", None), kw.pop("callback_on_step_end_tensor_inputs", None)))
    if image is not None:
        kw["image"] = image
    frames = AD_FRAMES if guidance_family(pipe) == "animatediff" else WAN_FRAMES
    return pipe(height=64, width=64, num_frames=frames, num_inference_steps=STEPS, guidance_scale=2.0, output_type=output_type,
                generator=torch.Generator().manual_seed(seed), **{k: v.repeat(batch, 1, 1) for k, v in tiny_prompt_embeds(pipe).items()},
                **kw).frames


def _unguided(pipe, seed=0, image=None) -> torch.Tensor:
    key = (id(pipe), seed, image is not None)
    if key not in _UNGUIDED:
        _UNGUIDED[key] = _run(pipe, seed=seed, image=image)
    return _UNGUIDED[key]


def _mean_frame_similarity(loss, frames: torch.Tensor) -> float:
    with torch.no_grad():
        return float(loss.similarity(frames.flatten(0, 1)).mean())


# -- which frames a step decodes ------------------------------------------------------------------------------

@pytest.mark.parametrize("num_frames,per_step", [(5, 2), (8, 2), (16, 4), (21, 4), (21, 5), (3, 4)])
def test_frames_rotate_over_the_clip_and_cover_it(num_frames, per_step):
    assert sorted(frame_order(num_frames)) == list(range(num_frames))
    needed = math.ceil(num_frames / per_step)
    for first in range(3):  # any run of `needed` consecutive guided steps covers the clip
        seen = set()
        for g in range(first, first + needed):
            frames = frames_for_step(num_frames, per_step, g)
            assert frames == sorted(frames) and len(frames) == min(per_step, num_frames)
            seen.update(frames)
        assert seen == set(range(num_frames))
    if num_frames >= 16:  # spread: a step's frames are not bunched together
        frames = frames_for_step(num_frames, per_step, 0)
        assert min(b - a for a, b in zip(frames, frames[1:])) >= num_frames // (2 * per_step)
    assert frames_for_step(num_frames, None, 7) == list(range(num_frames))


# -- AnimateDiff: per-frame VAE, DDIM ------------------------------------------------------------------------

def _x0_seen_by_guidance(monkeypatch) -> list[torch.Tensor]:
    """Record the x0 estimate the callback itself recovers at each guided step."""
    from styleid_guidance.integrations import callback as callback_module

    seen = []

    def recording(scheduler, latents, model_output, timestep):
        x0, factor = recover_x0(scheduler, latents, model_output, timestep)
        seen.append(x0.clone())
        return x0, factor

    monkeypatch.setattr(callback_module, "recover_x0", recording)
    return seen


def test_animatediff_scale_zero_is_bit_identical_and_x0_is_exact_at_every_step(animatediff, loss, monkeypatch):
    """In a guided run, the x0 the callback edits is the DDIM step's own pred_original_sample at every step, and
    each step decodes only its 2 frames, rotating so that every frame is guided."""
    from diffusers import DDIMScheduler

    assert isinstance(animatediff.scheduler, DDIMScheduler)
    base = _unguided(animatediff)
    assert base.shape == (1, AD_FRAMES, 3, 64, 64)
    assert torch.equal(_run(animatediff, IdentityGuidanceCallback(loss, scale=0.0)), base)
    step = animatediff.scheduler.step
    theirs, decoded, guided_frames = [], [], []

    def spying_step(*args, **kwargs):
        out = step(*args, **{**kwargs, "return_dict": True})
        theirs.append(out.pred_original_sample)
        return out

    mine = _x0_seen_by_guidance(monkeypatch)
    monkeypatch.setattr(animatediff.scheduler, "step", spying_step)
    cb = IdentityGuidanceCallback(loss, end=1.0, frames_per_step=PER_STEP)
    real_decode = cb.decode

    def counting_decode(pipe, x0, frames=None):
        out = real_decode(pipe, x0, frames)
        decoded.append(out.shape[1])
        guided_frames.append(frames)
        return out

    cb.decode = counting_decode
    _run(animatediff, cb)
    assert len(mine) == len(theirs) == STEPS
    for a, b in zip(mine, theirs):
        assert a.shape == (1, 4, AD_FRAMES, 32, 32)
        torch.testing.assert_close(a, b.float(), atol=1e-4, rtol=0)
    assert decoded == [PER_STEP] * STEPS
    assert set().union(*guided_frames) == set(range(AD_FRAMES))


def test_animatediff_guidance_raises_per_frame_similarity_on_three_seeds(animatediff, loss):
    assert guidance_family(animatediff) == "animatediff"
    for seed in range(3):
        cb = IdentityGuidanceCallback(loss, end=1.0, frames_per_step=PER_STEP)  # the family's default scale
        assert cb.scale_for(animatediff) == DEFAULT_SCALES["animatediff"]
        before = _mean_frame_similarity(loss, _unguided(animatediff, seed))
        guided = _run(animatediff, cb, seed=seed)
        assert torch.isfinite(guided).all()
        after = _mean_frame_similarity(loss, guided)
        assert after > before + 0.004, (seed, before, after)
        assert len(cb.last_losses) == STEPS


def test_animatediff_xt_mode_through_the_motion_unet(animatediff, loss):
    """x_t mode re-runs the UNetMotionModel on the 5-D input (CFG batch included) and still raises similarity."""
    before = _mean_frame_similarity(loss, _unguided(animatediff))
    after = _mean_frame_similarity(loss, _run(animatediff, IdentityGuidanceCallback(loss, mode="xt", end=1.0, frames_per_step=PER_STEP)))
    assert after > before + 0.004, (before, after)


def test_two_clips_pair_with_two_references(animatediff, astronaut, camera):
    pair = StyleIDLoss(StyleIDEncoder.from_open_clip("test-tiny", pretrained=None), reference=[astronaut, camera], crop="center")
    base = _run(animatediff, batch=2)  # AnimateDiff ignores num_videos_per_prompt: a batch of two prompts
    guided = _run(animatediff, IdentityGuidanceCallback(pair, scale=0.3, end=1.0, frames_per_step=PER_STEP), batch=2)
    assert guided.shape == (2, AD_FRAMES, 3, 64, 64)
    with torch.no_grad():
        gain = [pair.similarity(guided[:, j]) - pair.similarity(base[:, j]) for j in range(AD_FRAMES)]
    assert (torch.stack(gain).mean(0) > 0).all(), gain  # each clip moves towards its own reference


# -- Wan 2.1: causal 4x temporal VAE, flow matching ----------------------------------------------------------

def test_wan_decode_selected_frames_matches_the_pipeline_decode(wan, loss):
    """Exact mode (temporal_context=None) decodes the prefix causally: the pixel frames of any selected latent
    frames are exactly the pipeline's own output frames; a context window approximates them."""
    latents = _run(wan, output_type="latent")
    video = _unguided(wan)
    assert latents.shape == (1, 16, WAN_LATENT_FRAMES, 8, 8) and video.shape == (1, WAN_FRAMES, 3, 64, 64)
    cb = IdentityGuidanceCallback(loss)
    with torch.no_grad():
        torch.testing.assert_close(cb.decode(wan, latents.float()), video, atol=1e-5, rtol=0)
        exact = decode_video_frames(wan.vae, latents.float(), [0, 1, 3], context=None)
        pixel = [0, 1, 2, 3, 4, 9, 10, 11, 12]  # latent 0 -> frame 0, latent f -> frames 4f-3 .. 4f
        torch.testing.assert_close(exact, video[:, pixel], atol=1e-5, rtol=0)
        window = decode_video_frames(wan.vae, latents.float(), [1, 3], context=3)  # windows reaching frame 0: exact
        torch.testing.assert_close(window, video[:, pixel[1:]], atol=1e-5, rtol=0)
        approx = decode_video_frames(wan.vae, latents.float(), [1, 3], context=1)
        assert approx.shape == (1, 8, 3, 64, 64)
        torch.testing.assert_close(approx[:, :4], video[:, pixel[1:5]], atol=1e-5, rtol=0)  # latent 1's window is [0, 1]
        assert 0 < (approx[:, 4:] - video[:, pixel[5:]]).abs().mean() < 0.05  # latent 3 behind latent 2 only
        first_only = decode_video_frames(wan.vae, latents.float(), [3], context=0)  # a window's first frame: 1 pixel frame
        assert first_only.shape == (1, 1, 3, 64, 64)
        # exact mode: the step's frames keep a graph, the frames between run forward only
        z = latents.float().clone().requires_grad_(True)
        with torch.enable_grad():
            decode_video_frames(wan.vae, z, [1, 3], context=None).mean().backward()
        moved = z.grad.abs().sum(dim=(0, 1, 3, 4))
        assert moved[1] > 0 and moved[3] > 0 and moved[0] == 0 and moved[2] == 0
    with pytest.raises(StyleIDError, match="latent frames"):
        decode_video_frames(wan.vae, latents.float(), [WAN_LATENT_FRAMES])


def test_exact_decode_of_a_wan22_layout_vae():
    """Wan 2.2 TI2V's VAE (48 channels, 2x2 patches, per-channel latent statistics): the cache walk decodes exactly
    what the pipelines' `vae.decode(latents / (1 / std) + mean)` does."""
    from diffusers import AutoencoderKLWan

    from styleid_guidance.tiny.rng import seeded

    with seeded(0):
        vae = AutoencoderKLWan(base_dim=3, z_dim=48, in_channels=12, out_channels=12, is_residual=True, patch_size=2,
                               latents_mean=[0.1] * 48, latents_std=[2.0] * 48, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                               scale_factor_spatial=16, scale_factor_temporal=4, temperal_downsample=[False, True, True]).eval()
        latents = torch.randn(1, 48, 3, 2, 2)
    with torch.no_grad():
        video = vae.decode(latents * 2.0 + 0.1, return_dict=False)[0]  # [1, 3, 9, 32, 32] in [-1, 1]
        mine = decode_video_frames(vae, latents, [0, 2], context=None)
    assert video.shape == (1, 3, 9, 32, 32) and mine.shape == (1, 5, 3, 32, 32)
    torch.testing.assert_close(mine, (video[:, :, [0, 5, 6, 7, 8]].permute(0, 2, 1, 3, 4) / 2 + 0.5).clamp(0, 1), atol=1e-5, rtol=0)


def test_wan_scale_zero_is_bit_identical_and_x0_is_exact_at_every_step(wan, loss, monkeypatch):
    """In a guided run, the x0 the callback edits is the flow-matching step's own x_t − σ_t·v at every step."""
    assert torch.equal(_run(wan, IdentityGuidanceCallback(loss, scale=0.0)), _unguided(wan))
    step = wan.scheduler.step
    expected = []

    def spying_step(model_output, timestep, sample, *args, **kwargs):
        sigma = wan.scheduler.sigmas[wan.scheduler.step_index or 0]
        expected.append(sample.float() - float(sigma) * model_output.float())
        return step(model_output, timestep, sample, *args, **kwargs)

    mine = _x0_seen_by_guidance(monkeypatch)
    monkeypatch.setattr(wan.scheduler, "step", spying_step)
    cb = IdentityGuidanceCallback(loss, end=1.0, frames_per_step=PER_STEP)
    _run(wan, cb)
    assert len(mine) == len(expected) == len(cb.last_losses) == STEPS
    for a, b in zip(mine, expected):
        assert a.shape == (1, 16, WAN_LATENT_FRAMES, 8, 8)
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


@pytest.mark.parametrize("image_to_video", [False, True])
def test_wan_guidance_raises_per_frame_similarity_on_three_seeds(wan, wan_i2v, loss, astronaut, image_to_video):
    pipe = wan_i2v if image_to_video else wan
    assert guidance_family(pipe) == "wan" and DEFAULT_SCALES["wan"] > DEFAULT_SCALES["image"]
    image = astronaut.resize((64, 64)) if image_to_video else None
    for seed in range(3):
        before = _mean_frame_similarity(loss, _unguided(pipe, seed, image))
        cb = IdentityGuidanceCallback(loss, end=1.0, frames_per_step=PER_STEP)  # default scale, exact cached decode
        guided = _run(pipe, cb, seed=seed, image=image)
        assert guided.shape == (1, WAN_FRAMES, 3, 64, 64) and torch.isfinite(guided).all()
        after = _mean_frame_similarity(loss, guided)
        assert after > before + 0.001, (image_to_video, seed, before, after)


def test_wan22_ti2v_guides_around_the_pinned_first_frame(loss, astronaut):
    """Wan 2.2 TI2V overwrites the first latent frame with the photo's at every step: guidance decodes what the
    pipeline will (the photo in frame 0 as causal context), never spends a step on that frame, leaves its pixels
    untouched and raises the clip's similarity on 3 seeds."""
    pipe = tiny_wan(ti2v=True)
    image = astronaut.resize((64, 64))
    assert guidance_family(pipe) == "wan"
    for seed in range(3):
        base = _run(pipe, seed=seed, image=image)
        if seed == 0:
            assert torch.equal(_run(pipe, IdentityGuidanceCallback(loss, scale=0.0), seed=seed, image=image), base)
        cb = IdentityGuidanceCallback(loss, end=1.0, frames_per_step=PER_STEP)
        seen = []
        real_decode = cb.decode
        cb.decode = lambda p, x0, frames=None: (seen.append(frames), real_decode(p, x0, frames))[1]
        guided = _run(pipe, cb, seed=seed, image=image)
        assert "condition" in cb.tensor_inputs and set().union(*seen) == set(range(1, WAN_LATENT_FRAMES))
        assert torch.equal(guided[:, 0], base[:, 0])  # the photo's frame: pinned, and first in the causal VAE
        assert _mean_frame_similarity(loss, guided) > _mean_frame_similarity(loss, base) + 0.005, seed


def test_wan_i2v_scale_zero_and_bad_settings(wan_i2v, loss, astronaut):
    image = astronaut.resize((64, 64))
    assert torch.equal(_run(wan_i2v, IdentityGuidanceCallback(loss, scale=0.0), image=image), _unguided(wan_i2v, 0, image))
    xt = IdentityGuidanceCallback(loss, scale=0.1, mode="xt")
    with pytest.raises(StyleIDError, match="mode='x0'"):  # the transformer's input is cat([latents, condition])
        wan_i2v(image=image, height=64, width=64, num_frames=5, num_inference_steps=2, guidance_scale=1.0, output_type="latent",
                **tiny_prompt_embeds(wan_i2v), **prepare_guidance_kwargs(wan_i2v, xt))
    from diffusers import UniPCMultistepScheduler
    from styleid_guidance.integrations import check_scheduler

    # Wan's shipped scheduler: no exact x0 for the callback, and the error says what to swap in
    with pytest.raises(StyleIDError, match=r"FlowMatchEulerDiscreteScheduler\(shift=5.0\)"):
        check_scheduler(UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0))
    with pytest.raises(StyleIDError, match="frames_per_step"):
        IdentityGuidanceCallback(loss, frames_per_step=0)
    with pytest.raises(StyleIDError, match="temporal_context"):
        IdentityGuidanceCallback(loss, temporal_context=-1)


def test_default_scales_per_family(loss):
    from diffusers import StableDiffusionPipeline

    from styleid_guidance.tiny.sd import tiny_sd15_components

    sd = StableDiffusionPipeline(**tiny_sd15_components())
    cb = IdentityGuidanceCallback(loss)
    assert cb.config.scale is None and cb.scale_for(sd) == DEFAULT_SCALES["image"] == 0.05
    assert IdentityGuidanceCallback(loss, scale=0.2).scale_for(sd) == 0.2
    assert set(DEFAULT_SCALES) == {"image", "animatediff", "wan"}
    assert DEFAULT_SCALES["image"] < DEFAULT_SCALES["animatediff"] < DEFAULT_SCALES["wan"]
