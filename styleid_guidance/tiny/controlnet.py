"""Tiny random SDXL-ControlNet and FLUX-ControlNet components, built from configs (offline, CPU, seconds).

Shapes follow diffusers' own pipeline tests, shrunk further; the point is to run the real pipeline code paths
(InstantID, InfiniteYou, guidance callbacks) without any download. Images of 32–64 px.

Random weights are not trained weights, and two things a trained InstantID / InfiniteYou does by itself have
to be forced here, or the tiny pipelines would ignore the face and every identity test would pass vacuously:
- `_unzero`: a ControlNet is *initialised* with zero output convolutions so that, before training, it adds
  nothing to the UNet / transformer. A random tiny one would stay exactly inert; giving those layers small
  random weights makes IdentityNet / InfuseNet actually change the output, as trained ones do.
- `ID_GAIN`: a random Resampler's tokens are dominated by its learnt-query latents and hardly move with its
  512-d input; training makes them depend on the face. Scaling the input projection by ID_GAIN gives the tiny
  face embedding a visible say in the tokens (different faces → different images).
Neither trick is used with real weights: they live only here, in the tiny builders.
"""
from __future__ import annotations

import torch
from diffusers import AutoencoderKL, EulerDiscreteScheduler, FlowMatchEulerDiscreteScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, T5Config, T5EncoderModel

from styleid_guidance.pipelines.resampler import build_resampler, diffusers_to_upstream

from .rng import seeded
from .sd import byte_tokenizer

TEXT_DIM = 32  # each tiny text encoder's width; SDXL cross-attention = 2 × this
ID_GAIN = 10.0  # input-projection gain of the random Resampler (module docstring: why)


def _clip_config(**kw: object) -> CLIPTextConfig:
    return CLIPTextConfig(bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=TEXT_DIM, intermediate_size=37,
                          num_attention_heads=4, num_hidden_layers=2, vocab_size=1000, projection_dim=TEXT_DIM, **kw)


def _unzero(model: torch.nn.Module, std: float = 0.05) -> None:
    """Give a random ControlNet's zero-initialised layers small random weights, so it has an effect (module
    docstring: why). Only all-zero weight matrices/kernels are touched; biases stay zero."""
    for p in model.parameters():
        if p.ndim > 1 and not p.detach().any():
            p.data.normal_(0.0, std)


def tiny_sdxl_controlnet_components(seed: int = 0) -> dict:
    """Components for `StableDiffusionXLControlNetPipeline` (and InstantID), with an IdentityNet controlnet."""
    # imported here, not with the module: building the tiny FLUX set must not load the SDXL pipeline module
    from styleid_guidance.pipelines.instantid import IdentityNet

    with seeded(seed):
        unet_kw = dict(block_out_channels=(8, 16), layers_per_block=1, in_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                       attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
                       addition_time_embed_dim=8, transformer_layers_per_block=(1, 1), norm_num_groups=4,
                       projection_class_embeddings_input_dim=6 * 8 + TEXT_DIM, cross_attention_dim=2 * TEXT_DIM)
        unet = UNet2DConditionModel(sample_size=32, out_channels=4, up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), **unet_kw)
        controlnet = IdentityNet(conditioning_embedding_out_channels=(8, 16), **unet_kw)
        _unzero(controlnet)
        vae = AutoencoderKL(block_out_channels=[8, 16], in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=4,
                            down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                            sample_size=64, scaling_factor=0.13025)
        components = dict(
            unet=unet, controlnet=controlnet, vae=vae,
            scheduler=EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                             timestep_spacing="leading", steps_offset=1),
            text_encoder=CLIPTextModel(_clip_config()), text_encoder_2=CLIPTextModelWithProjection(_clip_config()),
            tokenizer=byte_tokenizer(), tokenizer_2=byte_tokenizer(),
            feature_extractor=None, image_encoder=None,
        )
    return {k: (v.eval() if isinstance(v, torch.nn.Module) else v) for k, v in components.items()}


def tiny_instantid_state_dict(unet: UNet2DConditionModel, seed: int = 0, num_tokens: int = 16) -> dict:
    """A random `ip-adapter.bin` for `unet` in the official layout (keys as upstream writes them)."""
    with seeded(seed):
        proj = build_resampler(embed_dim=512, output_dim=unet.config.cross_attention_dim, num_queries=num_tokens,
                               hidden_dim=64, depth=2, heads=1)
        ip = {}
        for index, name in enumerate(unet.attn_processors):
            if name.endswith("attn2.processor"):
                attn = unet.get_submodule(name.removesuffix(".processor"))
                for param in ("to_k_ip", "to_v_ip"):
                    ip[f"{index}.{param}.weight"] = torch.randn(attn.to_k.out_features, attn.to_k.in_features) * 0.2
        proj.proj_in.weight.data.mul_(ID_GAIN)
    return {"image_proj": diffusers_to_upstream(proj.state_dict()), "ip_adapter": ip}


def tiny_flux_controlnet_components(seed: int = 0) -> dict:
    """Components for `FluxControlNetPipeline` (and InfiniteYou), with an InfuseNet controlnet."""
    from diffusers import FluxTransformer2DModel

    from styleid_guidance.pipelines.infiniteyou import InfuseNet  # here, so the SDXL set does not load FLUX

    with seeded(seed):
        flux_kw = dict(patch_size=1, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
                       joint_attention_dim=TEXT_DIM, pooled_projection_dim=TEXT_DIM, axes_dims_rope=[4, 4, 8], guidance_embeds=True)
        transformer = FluxTransformer2DModel(**flux_kw)
        controlnet = InfuseNet(**flux_kw)
        _unzero(controlnet)
        vae = AutoencoderKL(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(4,), layers_per_block=1,
                            latent_channels=1, norm_num_groups=1, use_quant_conv=False, use_post_quant_conv=False,
                            shift_factor=0.0609, scaling_factor=1.5035)
        t5 = T5EncoderModel(T5Config(d_model=TEXT_DIM, d_kv=8, d_ff=37, num_layers=2, num_heads=4, vocab_size=1000,
                                     decoder_start_token_id=0, pad_token_id=1, eos_token_id=1))
        components = dict(
            transformer=transformer, controlnet=controlnet, vae=vae, scheduler=FlowMatchEulerDiscreteScheduler(),
            text_encoder=CLIPTextModel(_clip_config()), text_encoder_2=t5,
            tokenizer=byte_tokenizer(), tokenizer_2=byte_tokenizer(max_length=512),
        )
    return {k: (v.eval() if isinstance(v, torch.nn.Module) else v) for k, v in components.items()}


def tiny_infiniteyou_state_dict(joint_attention_dim: int = TEXT_DIM, seed: int = 0, num_tokens: int = 8) -> dict:
    """A random `image_proj_model.bin` in the official layout for tiny tokens of `joint_attention_dim`."""
    with seeded(seed):
        proj = build_resampler(embed_dim=512, output_dim=joint_attention_dim, num_queries=num_tokens, hidden_dim=64, depth=2, heads=1)
        proj.proj_in.weight.data.mul_(ID_GAIN)
    return {"image_proj": diffusers_to_upstream(proj.state_dict())}
