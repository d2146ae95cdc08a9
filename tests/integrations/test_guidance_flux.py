"""Identity guidance on FLUX (FlowMatchEuler, packed latents), with a tiny random FluxPipeline."""
from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

from styleid_guidance.integrations import IdentityGuidanceCallback, prepare_guidance_kwargs
from styleid_guidance.tiny.rng import seeded
from styleid_guidance import StyleIDEncoder, StyleIDLoss

STEPS = 5


@pytest.fixture(scope="module")
def flux():
    with seeded(0):
        transformer = FluxTransformer2DModel(patch_size=1, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=16,
                                             num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 4, 8])
        vae = AutoencoderKL(block_out_channels=[8, 8], in_channels=3, out_channels=3, latent_channels=1, norm_num_groups=1,
                            down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                            use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035)
        embeds = {"prompt_embeds": torch.randn(1, 8, 32), "pooled_prompt_embeds": torch.randn(1, 32)}
    pipe = FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae.eval(), transformer=transformer.eval(),
                        text_encoder=None, tokenizer=None, text_encoder_2=None, tokenizer_2=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe, embeds


def _run(pipe, embeds, cb=None, height=64, width=48, output_type="pt"):
    kw = prepare_guidance_kwargs(pipe, cb) if cb is not None else {}
    return pipe(height=height, width=width, num_inference_steps=STEPS, guidance_scale=3.5, output_type=output_type,
                generator=torch.Generator().manual_seed(0), **embeds, **kw).images


def test_flux_guidance_on_packed_latents(flux, astronaut):
    pipe, embeds = flux
    loss = StyleIDLoss(StyleIDEncoder.from_open_clip("test-tiny", pretrained=None), reference=astronaut, crop="center")
    base = _run(pipe, embeds)
    assert torch.equal(_run(pipe, embeds, IdentityGuidanceCallback(loss, scale=0.0)), base)
    for mode in ("x0", "xt"):
        cb = IdentityGuidanceCallback(loss, scale=0.3, mode=mode, end=1.0)
        guided = _run(pipe, embeds, cb)  # non-square: the token grid comes from the recorded img_ids
        assert guided.shape == base.shape == (1, 3, 64, 48) and torch.isfinite(guided).all()
        assert loss.similarity(guided).item() > loss.similarity(base).item() + 0.02, mode


def test_flux_decode_matches_the_pipeline_decode(flux):
    """The callback's x0 decode (unpack, scaling and shift) is exactly how the pipeline decodes its latents."""
    pipe, embeds = flux
    cb = IdentityGuidanceCallback(StyleIDLoss(StyleIDEncoder.from_open_clip("test-tiny", pretrained=None), reference=torch.rand(1, 3, 64, 64), crop="center"))
    cb.attach(pipe)
    packed = _run(pipe, embeds, output_type="latent")
    images = _run(pipe, embeds)
    with torch.no_grad():
        torch.testing.assert_close(cb.decode(pipe, packed.float()), images, atol=1e-5, rtol=0)
