"""StyleIDGuidance on FLUX through ComfyUI's own sampler (`comfy.sample.sample`), in-process: a tiny random
`comfy.supported_models.Flux` (dev, guidance embedding) and `FluxSchnell` with 16-channel latents, decoded by a
random 16-channel TAESD (VAELoader's `taef1`) or a tiny KL autoencoder. Bit-identical at scale 0, higher similarity
on every seed, and the guidance decode applies FLUX's latent format (scale_factor and shift_factor)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from comfyui_support import (flux_conditioning, import_comfy, need_root, requires_comfyui, sample_and_decode, tiny_flux,
                             tiny_kl_vae, tiny_sd15, tiny_taesd)
from styleid_guidance.errors import StyleIDError

pytestmark = requires_comfyui()
STEPS = 4
SEEDS = (0, 1, 2)
SHAPE = (1, 16, 8, 8)  # FLUX latents: 16 channels, 8x downscale (a 64x64 image)


@pytest.fixture(scope="module")
def engine():
    import_comfy(need_root())
    from styleid_guidance.integrations.comfyui.models import load_styleid_model

    with torch.inference_mode():  # as ComfyUI's loader nodes run: weights become inference tensors
        taef1 = tiny_taesd(latent_channels=16, vae_scale=0.3611, vae_shift=0.1159)
        kl = tiny_kl_vae()
    return {"dev": tiny_flux(), "schnell": tiny_flux(schnell=True), "taef1": taef1, "kl": kl,
            "styleid": load_styleid_model("test-tiny", device="cpu", detector="mtcnn")}


@pytest.fixture(scope="module")
def reference(astronaut):
    """ComfyUI IMAGE [1,H,W,3] of a face photo."""
    return torch.from_numpy(np.asarray(astronaut.resize((128, 128)), np.float32) / 255.0)[None]


def sample(model, seed, vae, schnell=False):
    """FLUX as its workflows sample it: cfg 1 (dev's guidance is the embedded value, schnell has none), euler/simple."""
    positive, negative = flux_conditioning(guidance=None if schnell else 3.5)
    return sample_and_decode(model, vae, seed, STEPS, 1.0, "euler", "simple", positive, negative, SHAPE)


def guide(model, vae, engine, reference, scale):
    from styleid_guidance.integrations.comfyui.nodes_guidance import StyleIDGuidance

    with torch.inference_mode():
        out = StyleIDGuidance.execute(model=model, vae=vae, styleid_model=engine["styleid"], reference=reference,
                                      scale=scale, start_percent=0.0, end_percent=1.0, every_n_steps=1)
    patched = out.args[0]
    return patched, patched.model_options["sampler_post_cfg_function"][-1]


def similarity(fn, image):
    with torch.no_grad():
        return 1.0 - float(fn.identity_loss(image.permute(0, 3, 1, 2).clone())[0])


def test_tiny_flux_is_flux(engine):
    import comfy.latent_formats
    import comfy.model_base
    import comfy.supported_models

    # ComfyUI's detector picked the FLUX entries a real dev / schnell checkpoint gets
    assert type(engine["dev"].model.model_config) is comfy.supported_models.Flux
    assert type(engine["schnell"].model.model_config) is comfy.supported_models.FluxSchnell
    for kind in ("dev", "schnell"):
        model = engine[kind]
        assert isinstance(model.model, comfy.model_base.Flux)
        assert isinstance(model.get_model_object("latent_format"), comfy.latent_formats.Flux)
    assert engine["dev"].model.diffusion_model.params.guidance_embed
    assert not engine["schnell"].model.diffusion_model.params.guidance_embed
    assert engine["taef1"].latent_channels == engine["kl"].latent_channels == 16


@pytest.mark.parametrize("kind", ["dev", "schnell"])
def test_scale_zero_is_bit_identical(engine, reference, kind):
    model, vae = engine[kind], engine["taef1"]
    patched, fn = guide(model, vae, engine, reference, 0.0)
    for seed in SEEDS[:2]:
        ours, plain = sample(patched, seed, vae, kind == "schnell")[0], sample(model, seed, vae, kind == "schnell")[0]
        assert ours.shape == SHAPE and torch.equal(ours, plain)
    assert fn.last_losses == []
    assert "sampler_post_cfg_function" not in model.model_options  # the input MODEL is untouched


@pytest.mark.parametrize("kind, vae", [("dev", "taef1"), ("schnell", "kl")])
def test_guidance_raises_similarity_on_every_seed(engine, reference, kind, vae):
    model, vae = engine[kind], engine[vae]
    patched, fn = guide(model, vae, engine, reference, 0.5)
    assert fn.region is not None  # the reference's face landmarks place the crop
    gains = []
    for seed in SEEDS:
        fn.last_losses.clear()
        guided = similarity(fn, sample(patched, seed, vae, kind == "schnell")[1])
        plain = similarity(fn, sample(model, seed, vae, kind == "schnell")[1])
        assert len(fn.last_losses) == STEPS and all(np.isfinite(fn.last_losses))  # every FLUX sigma is in the window
        gains.append(guided - plain)
    assert all(g > 0 for g in gains), gains


@pytest.mark.parametrize("vae", ["taef1", "kl"])
def test_guidance_decode_applies_the_flux_latent_format(engine, reference, vae):
    """The decode that guidance differentiates is ComfyUI's own decode of the same latents: x0 in model space goes
    through Flux.process_out (÷ scale_factor, + shift_factor) before the VAE, exactly as the sampler's output does."""
    vae = engine[vae]
    _, fn = guide(engine["dev"], vae, engine, reference, 0.5)
    fmt = fn.latent_format
    assert (fmt.scale_factor, fmt.shift_factor) == (0.3611, 0.1159)
    x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ours = fn.decode(x0)
        decoder = vae.first_stage_model
        direct = ((decoder.decode(fmt.process_out(x0)).float() + 1.0) / 2.0).clamp(0.0, 1.0)
        skipped = ((decoder.decode(x0).float() + 1.0) / 2.0).clamp(0.0, 1.0)  # what a decode without process_out gives
        with torch.inference_mode():
            comfy_decode = vae.decode(fmt.process_out(x0)).permute(0, 3, 1, 2)  # VAEDecode on the sampler's output
    assert ours.shape == (1, 3, 64, 64)
    torch.testing.assert_close(ours, direct, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours, comfy_decode, rtol=0, atol=1e-5)
    assert (ours - skipped).abs().max() > 1e-2  # the check above could tell process_out missing


def test_a_vae_of_the_wrong_latent_family_is_one_sentence(engine, reference):
    from styleid_guidance.integrations.comfyui.nodes_guidance import StyleIDGuidance

    with torch.inference_mode():
        sd_taesd = tiny_taesd()  # SD's 4-channel TAESD on a FLUX model
    cases = [(engine["dev"], sd_taesd, r"the VAE decodes 4-channel latents but the model's \(Flux\) have 16.*taef1"),
             (tiny_sd15(), engine["taef1"], r"the VAE decodes 16-channel latents but the model's \(SD15\) have 4")]
    for model, vae, message in cases:
        with pytest.raises(StyleIDError, match=message) as err:
            StyleIDGuidance.execute(model=model, vae=vae, styleid_model=engine["styleid"], reference=reference,
                                    scale=0.5, start_percent=0.0, end_percent=1.0, every_n_steps=1)
        assert "\n" not in str(err.value)
