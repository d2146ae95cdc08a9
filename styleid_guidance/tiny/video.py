"""Tiny random video pipelines built from configs: AnimateDiff (per-frame KL VAE + motion modules) and Wan 2.1
(causal, temporally compressed `AutoencoderKLWan` + `WanTransformer3DModel`, text-to-video and image-to-video).

No tokenizer or text encoder: Wan's is a T5 whose tokenizer needs vocabulary files, so the pipelines are called
with `prompt_embeds` (the embeds below), which diffusers accepts in place of a prompt. Wan runs with
`FlowMatchEulerDiscreteScheduler` (identity guidance needs exact x0 recovery, see
`styleid_guidance.integrations.x0_estimate`). Images are 64 px.
"""
from __future__ import annotations

import torch
from diffusers import (
    AnimateDiffPipeline,
    AutoencoderKLWan,
    FlowMatchEulerDiscreteScheduler,
    MotionAdapter,
    WanImageToVideoPipeline,
    WanPipeline,
    WanTransformer3DModel,
)
from transformers import (
    CLIPImageProcessor,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)

from .rng import seeded
from .sd import CROSS_ATTENTION_DIM, tiny_sd15_components

WAN_TEXT_DIM = 32
WAN_SHIFT = 5.0  # Wan 2.1's flow_shift at 720p (3.0 at 480p): the larger one is the harder case for guidance


def tiny_animatediff(seed: int = 0) -> AnimateDiffPipeline:
    """AnimateDiff on the tiny SD1.5 UNet/VAE (DDIM), with a random `MotionAdapter`; 64-px frames."""
    parts = tiny_sd15_components(seed)
    with seeded(seed):
        adapter = MotionAdapter(block_out_channels=(4, 8), motion_layers_per_block=1, motion_norm_num_groups=2,
                                motion_num_attention_heads=2, motion_max_seq_length=32)
    pipe = AnimateDiffPipeline(vae=parts["vae"], text_encoder=parts["text_encoder"], tokenizer=parts["tokenizer"],
                               unet=parts["unet"], motion_adapter=adapter.eval(), scheduler=parts["scheduler"])
    pipe.unet.eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_wan_vae(seed: int = 0, wan22: bool = False) -> AutoencoderKLWan:
    """Wan 2.1's VAE layout (8x spatial, 4x causal temporal compression, 16 latent channels), 6 base channels;
    `wan22`: Wan 2.2 TI2V-5B's (16x spatial through 2x2 patches, 48 latent channels, residual up/down blocks).

    Adjusted so that, like a trained one, it responds smoothly to its latents and mostly in the latent frame's
    own pixel frames. Diffusers' test VAE (3 base channels) is neither: its RMS norms over 3 channels make the
    decode jump (finite differences 1000x the gradient), its biases swamp the latents (a 0.5-σ change of one
    latent frame moves its own pixels by ~0.001) and its random causal taps carry each latent frame into the
    later pixel frames 8x more than into its own. Here: 6 channels, the decoder's biases x0.3, its input conv
    x4 and the past taps of its temporal kernels x0.1 (own frames ~0.026, later ~0.012; gradients match finite
    differences)."""
    with seeded(seed):
        layout = dict(z_dim=48, in_channels=12, out_channels=12, is_residual=True, patch_size=2, latents_mean=[0.0] * 48,
                      latents_std=[1.0] * 48, scale_factor_spatial=16, scale_factor_temporal=4) if wan22 else dict(z_dim=16)
        vae = AutoencoderKLWan(base_dim=6, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True],
                               **layout).eval()
    with torch.no_grad():
        for name, param in vae.decoder.named_parameters():
            if name.endswith("bias"):
                param.mul_(0.3)
            elif param.ndim == 5 and param.shape[2] == 3:  # causal (t=3) kernels: taps 0, 1 are the past frames
                param[:, :, :2] *= 0.1
        vae.decoder.conv_in.weight.mul_(4.0)
    return vae


def _wan_transformer(in_channels: int, image_dim: int | None, out_channels: int = 16) -> WanTransformer3DModel:
    return WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=in_channels,
                                 out_channels=out_channels, text_dim=WAN_TEXT_DIM, freq_dim=256, ffn_dim=32, num_layers=2,
                                 cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=32,
                                 image_dim=image_dim).eval()


def tiny_wan(image_to_video: bool = False, seed: int = 0, ti2v: bool = False) -> WanPipeline | WanImageToVideoPipeline:
    """`WanPipeline` (text-to-video) or Wan 2.1's `WanImageToVideoPipeline` (the first frame's latents and a CLIP
    image embedding condition the transformer), with FlowMatchEuler at shift `WAN_SHIFT`. `ti2v`: Wan 2.2
    TI2V-5B's image-to-video instead (`expand_timesteps`: the photo's latents replace the first latent frame at
    every step; no image encoder; the 48-channel VAE, 16x spatial: 64-px frames are 4x4 latents)."""
    scheduler = FlowMatchEulerDiscreteScheduler(shift=WAN_SHIFT)
    vae = tiny_wan_vae(seed, wan22=ti2v)
    with seeded(seed):
        if ti2v:
            pipe = WanImageToVideoPipeline(tokenizer=None, text_encoder=None, vae=vae, scheduler=scheduler,
                                           transformer=_wan_transformer(48, None, out_channels=48), expand_timesteps=True)
        elif not image_to_video:
            pipe = WanPipeline(tokenizer=None, text_encoder=None, vae=vae, scheduler=scheduler,
                               transformer=_wan_transformer(16, None))
        else:
            image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
                hidden_size=4, projection_dim=4, num_hidden_layers=2, num_attention_heads=2, image_size=32,
                intermediate_size=16, patch_size=8)).eval()
            processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
            pipe = WanImageToVideoPipeline(tokenizer=None, text_encoder=None, vae=vae, scheduler=scheduler,
                                           image_encoder=image_encoder, image_processor=processor,
                                           transformer=_wan_transformer(36, 4))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_prompt_embeds(pipe: AnimateDiffPipeline | WanPipeline | WanImageToVideoPipeline, seed: int = 0) -> dict[str, torch.Tensor]:
    """Fixed random `prompt_embeds` / `negative_prompt_embeds` for a tiny video pipeline (no tokenizer needed)."""
    dim = WAN_TEXT_DIM if isinstance(pipe, (WanPipeline, WanImageToVideoPipeline)) else CROSS_ATTENTION_DIM
    gen = torch.Generator().manual_seed(seed)
    return {"prompt_embeds": torch.randn(1, 8, dim, generator=gen),
            "negative_prompt_embeds": torch.randn(1, 8, dim, generator=gen)}
