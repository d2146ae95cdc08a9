"""StyleIDGuidance on a video model through ComfyUI's own sampler, in-process: a tiny random Wan 2.1 T2V (built
through ComfyUI's detector, flow matching with Wan's shift) and a random Wan 2.1 causal VAE (4x in time). Scale 0
is bit-identical; every guided call decodes `frames_per_step` latent frames, rotating so that every frame is guided;
the guidance decode equals ComfyUI's own VAE decode on those frames; guidance raises the mean per-frame similarity
to the reference on every seed."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from comfyui_support import (import_comfy, need_root, requires_comfyui, sample_and_decode, tiny_flux, tiny_taesd,
                             tiny_wan21, tiny_wan_vae, wan_conditioning)
from styleid_guidance.errors import StyleIDError

pytestmark = requires_comfyui()
STEPS = 4
SEEDS = (0, 1, 2)
LATENT_FRAMES = 2  # 5 pixel frames
SHAPE = (1, 16, LATENT_FRAMES, 4, 4)  # 32x32 frames


@pytest.fixture(scope="module")
def engine():
    import_comfy(need_root())
    from styleid_guidance.integrations.comfyui.models import load_styleid_model

    with torch.inference_mode():  # as ComfyUI's loader nodes run
        vae = tiny_wan_vae()
    return {"wan": tiny_wan21(), "vae": vae, "styleid": load_styleid_model("test-tiny", device="cpu", detector="mtcnn")}


@pytest.fixture(scope="module")
def reference(astronaut):
    return torch.from_numpy(np.asarray(astronaut.resize((128, 128)), np.float32) / 255.0)[None]


def sample(model, vae, seed):
    positive, negative = wan_conditioning()
    return sample_and_decode(model, vae, seed, STEPS, 1.0, "euler", "simple", positive, negative, SHAPE)


def guide(engine, reference, scale, frames_per_step=1):
    from styleid_guidance.integrations.comfyui.nodes_guidance import StyleIDGuidance

    with torch.inference_mode():
        out = StyleIDGuidance.execute(model=engine["wan"], vae=engine["vae"], styleid_model=engine["styleid"],
                                      reference=reference, scale=scale, start_percent=0.0, end_percent=1.0,
                                      every_n_steps=1, frames_per_step=frames_per_step)
    patched = out.args[0]
    return patched, patched.model_options["sampler_post_cfg_function"][-1]


def mean_frame_similarity(fn, video):
    """ComfyUI's decoded clip [.., H, W, 3] → the mean over frames of StyleID similarity to the reference."""
    frames = video.reshape(-1, *video.shape[-3:]).permute(0, 3, 1, 2).clone()
    with torch.no_grad():
        return 1.0 - float(fn.identity_loss(frames).mean())


def test_tiny_wan_is_wan21(engine):
    import comfy.latent_formats
    import comfy.supported_models

    assert type(engine["wan"].model.model_config) is comfy.supported_models.WAN21_T2V
    assert isinstance(engine["wan"].get_model_object("latent_format"), comfy.latent_formats.Wan21)
    assert engine["vae"].latent_dim == 3 and engine["vae"].latent_channels == 16


def test_scale_zero_is_bit_identical(engine, reference):
    plain, _ = sample(engine["wan"], engine["vae"], 0)
    patched, fn = guide(engine, reference, 0.0)
    guided, _ = sample(patched, engine["vae"], 0)
    assert torch.equal(plain, guided) and fn.guided_frames == []


def test_frames_rotate_so_every_frame_is_guided(engine, reference):
    patched, fn = guide(engine, reference, 0.1, frames_per_step=1)
    sample(patched, engine["vae"], 0)
    assert len(fn.guided_frames) == STEPS and all(len(f) == 1 for f in fn.guided_frames)
    assert set().union(*fn.guided_frames) == set(range(LATENT_FRAMES))  # STEPS x 1 >= the latent frames


def test_the_guidance_decode_is_comfyuis_decode(engine, reference):
    _, fn = guide(engine, reference, 0.1)
    x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3)) * 0.5
    with torch.no_grad():
        images, n = fn.decode_frames(x0, [0, 1])
        # what VAEDecode gives for these latents: ComfyUI's samplers hand it the latent format's process_out
        full = engine["vae"].decode(engine["wan"].get_model_object("latent_format").process_out(x0))  # [B, T', H, W, 3]
    assert n == 1 + 4
    expected = torch.cat([full[0, :1], full[0, 1:5]]).permute(0, 3, 1, 2)  # latent 0 → frame 0, latent 1 → frames 1..4
    assert images.shape == expected.shape
    assert float(expected.std()) > 100 * 1e-5  # a decode that varies far more than the tolerance
    assert torch.allclose(images, expected, atol=1e-5)


@pytest.mark.parametrize("seed", SEEDS)
def test_guidance_raises_mean_frame_similarity(engine, reference, seed):
    patched, fn = guide(engine, reference, 0.5, frames_per_step=1)
    _, plain = sample(engine["wan"], engine["vae"], seed)
    _, guided = sample(patched, engine["vae"], seed)
    before, after = mean_frame_similarity(fn, plain), mean_frame_similarity(fn, guided)
    assert after > before, (seed, before, after)
    assert all(np.isfinite(fn.last_losses))


def test_a_2d_vae_on_a_video_model_is_one_sentence(engine, reference):
    from styleid_guidance.integrations.comfyui.guidance import patch_model

    taef1 = tiny_taesd(latent_channels=16, vae_scale=0.3611, vae_shift=0.1159)
    with pytest.raises(StyleIDError, match="video"):
        patch_model(engine["wan"], taef1, engine["styleid"], reference.permute(0, 3, 1, 2), 0.1, 0.0, 1.0, 1)
    with pytest.raises(StyleIDError, match="video"):
        patch_model(tiny_flux(), engine["vae"], engine["styleid"], reference.permute(0, 3, 1, 2), 0.1, 0.0, 1.0, 1)
    with pytest.raises(StyleIDError, match="frames_per_step"):
        guide(engine, reference, 0.1, frames_per_step=0)
