"""Tiny random FLUX.1 Kontext components, built from configs (offline, CPU, seconds).

The same tiny FLUX transformer / VAE / text encoders as the InfiniteYou set (`controlnet.py`), without a
ControlNet, for diffusers' own `FluxKontextPipeline`. Kontext feeds the transformer the noisy tokens followed by
the reference image's tokens (ids with first coordinate 1), so the transformer is the plain FLUX one.

At this size `vae_scale_factor` is 1 (one VAE block): a 32-px image is 32x32 one-channel latents, 16x16 = 256
packed tokens. The pipeline's own defaults assume 1024 px (`max_area`, `_auto_resize` to the preferred Kontext
resolutions); `TINY_CALL` holds the arguments that keep it at the tiny size.
"""
from __future__ import annotations

import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

from .controlnet import TEXT_DIM, _clip_config
from .rng import seeded
from .sd import byte_tokenizer

SIZE = 32
# the pipeline would otherwise resize the image to ~1024 px and generate at 1024² (its max_area default)
TINY_CALL = {"max_area": SIZE * SIZE, "_auto_resize": False, "max_sequence_length": 16}


def tiny_kontext_components(seed: int = 0) -> dict:
    """Components for `diffusers.FluxKontextPipeline` (random weights, guidance-distilled like Kontext [dev])."""
    with seeded(seed):
        transformer = FluxTransformer2DModel(patch_size=1, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=16,
                                             num_attention_heads=2, joint_attention_dim=TEXT_DIM, pooled_projection_dim=TEXT_DIM,
                                             axes_dims_rope=[4, 4, 8], guidance_embeds=True)
        vae = AutoencoderKL(sample_size=SIZE, in_channels=3, out_channels=3, block_out_channels=(4,), layers_per_block=1,
                            latent_channels=1, norm_num_groups=1, use_quant_conv=False, use_post_quant_conv=False,
                            shift_factor=0.0609, scaling_factor=1.5035)
        t5 = T5EncoderModel(T5Config(d_model=TEXT_DIM, d_kv=8, d_ff=37, num_layers=2, num_heads=4, vocab_size=1000,
                                     decoder_start_token_id=0, pad_token_id=1, eos_token_id=1))
        components = dict(
            transformer=transformer, vae=vae, scheduler=FlowMatchEulerDiscreteScheduler(),
            text_encoder=CLIPTextModel(_clip_config()), text_encoder_2=t5,
            tokenizer=byte_tokenizer(), tokenizer_2=byte_tokenizer(max_length=512),
            image_encoder=None, feature_extractor=None,
        )
    return {k: (v.eval() if isinstance(v, torch.nn.Module) else v) for k, v in components.items()}


def tiny_kontext_pipeline(seed: int = 0, device: str | torch.device = "cpu"):
    """An unmodified `diffusers.FluxKontextPipeline` on the tiny components, progress bar off."""
    from diffusers import FluxKontextPipeline

    pipe = FluxKontextPipeline(**tiny_kontext_components(seed))
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


# FLUX.1 [dev] / Kontext [dev]: 19 double + 38 single blocks of 24 heads x 128 (width 3072), T5-XXL 4096-d text,
# CLIP-L 768-d pooled, a 16-channel VAE. The reduced transformer keeps the per-token shapes that matter for the
# guidance cost ratio (head dim 128, the full VAE, 4096-d text width) with fewer, narrower blocks.
REDUCED_TRANSFORMER = dict(patch_size=1, in_channels=64, num_layers=2, num_single_layers=4, attention_head_dim=128,
                           num_attention_heads=8, joint_attention_dim=4096, pooled_projection_dim=768,
                           axes_dims_rope=[16, 56, 56], guidance_embeds=True)


def random_kontext_components(seed: int = 0) -> dict:
    """Components for `FluxKontextPipeline` with the real FLUX VAE (16 channels, 8x), a reduced random transformer
    (`REDUCED_TRANSFORMER`: width 1024, 2 + 4 blocks instead of 3072, 19 + 38; 149M of 11.9B parameters) and one-layer text encoders of the
    real output widths. Random weights: for speed and memory measurements only (benchmarks/guidance_overhead.py)."""
    with seeded(seed):
        transformer = FluxTransformer2DModel(**REDUCED_TRANSFORMER)
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(128, 256, 512, 512),
                            layers_per_block=2, down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                            use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.1159, scaling_factor=0.3611)
        clip = CLIPTextModel(CLIPTextConfig(bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=768, intermediate_size=64,
                                            num_attention_heads=2, num_hidden_layers=1, vocab_size=1000, projection_dim=768))
        t5 = T5EncoderModel(T5Config(d_model=4096, d_kv=8, d_ff=64, num_layers=1, num_heads=2, vocab_size=1000,
                                     decoder_start_token_id=0, pad_token_id=1, eos_token_id=1))
        components = dict(transformer=transformer, vae=vae, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True),
                          text_encoder=clip, text_encoder_2=t5, tokenizer=byte_tokenizer(), tokenizer_2=byte_tokenizer(max_length=512),
                          image_encoder=None, feature_extractor=None)
    return {k: (v.eval() if isinstance(v, torch.nn.Module) else v) for k, v in components.items()}
