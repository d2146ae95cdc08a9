"""Tiny random SD1.5 components and IP-Adapter weights, built from configs: offline, CPU, well under a second.

They run the real diffusers code paths (pipelines, `load_ip_adapter`, guidance callbacks) without downloads, for
tests, the benchmarks' smoke mode and the demo's `--profile tiny`. The IP-Adapter state dicts use the upstream
(h94/IP-Adapter) key names and layout, so loading them exercises the same conversion as the official files.
Images are 64 px (32-px latents).
"""
from __future__ import annotations

import torch
from diffusers import AutoencoderKL, AutoencoderTiny, UNet2DConditionModel
from tokenizers import pre_tokenizers
from transformers import (CLIPImageProcessor, CLIPTextConfig, CLIPTextModel, CLIPTokenizer, CLIPVisionConfig,
                          CLIPVisionModelWithProjection)

from styleid_guidance.pipelines.presets import sd15_scheduler

from .rng import seeded

IMAGE_SIZE = 64
CROSS_ATTENTION_DIM = 8
CLIP_IMAGE_SIZE = 32
IP_ADAPTER_VARIANTS = ("plain", "faceid", "faceid-plus", "faceid-plusv2")


def byte_tokenizer(max_length: int = 77) -> CLIPTokenizer:
    """A byte-level CLIP tokenizer without merges (one token per byte, 514 ids): no vocabulary files."""
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):
            vocab.setdefault(ch + suffix, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_length)


def tiny_sd15_components(seed: int = 0) -> dict:
    """Components for `StableDiffusionPipeline`: UNet, KL VAE (x2 downsampling), CLIP text encoder, tokenizer."""
    with seeded(seed):
        unet = UNet2DConditionModel(
            block_out_channels=(4, 8), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=CROSS_ATTENTION_DIM, norm_num_groups=2, attention_head_dim=2,
        )
        vae = AutoencoderKL(
            block_out_channels=[4, 8], in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=2,
            down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2, sample_size=IMAGE_SIZE,
        )
        text_encoder = CLIPTextModel(CLIPTextConfig(
            bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=CROSS_ATTENTION_DIM, intermediate_size=16,
            num_attention_heads=2, num_hidden_layers=2, vocab_size=1000,
        ))
    return dict(unet=unet.eval(), vae=vae.eval(), text_encoder=text_encoder.eval(), tokenizer=byte_tokenizer(),
                scheduler=sd15_scheduler(), safety_checker=None, feature_extractor=None, image_encoder=None,
                requires_safety_checker=False)


def tiny_taesd(latent_channels: int = 4, seed: int = 0) -> AutoencoderTiny:
    """A random `AutoencoderTiny` matching the tiny VAE's x2 latent grid (a stand-in for TAESD)."""
    with seeded(seed):
        return AutoencoderTiny(encoder_block_out_channels=(8, 8), decoder_block_out_channels=(8, 8),
                               num_encoder_blocks=(1, 1), num_decoder_blocks=(1, 1), latent_channels=latent_channels).eval()


def tiny_clip_image_encoder(projection_dim: int = 16, seed: int = 0) -> tuple[CLIPVisionModelWithProjection, CLIPImageProcessor]:
    """A tiny CLIP vision tower (the IP-Adapter image encoder) and its 32-px processor."""
    with seeded(seed):
        model = CLIPVisionModelWithProjection(CLIPVisionConfig(
            hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=2, image_size=CLIP_IMAGE_SIZE,
            patch_size=8, projection_dim=projection_dim,
        )).eval()
    processor = CLIPImageProcessor(size={"shortest_edge": CLIP_IMAGE_SIZE}, crop_size={"height": CLIP_IMAGE_SIZE, "width": CLIP_IMAGE_SIZE})
    return model, processor


def _randn(*shape: int, std: float = 0.2) -> torch.Tensor:
    return torch.randn(*shape) * std


def _layer_norm(prefix: str, dim: int) -> dict[str, torch.Tensor]:
    return {f"{prefix}.weight": torch.ones(dim), f"{prefix}.bias": torch.zeros(dim)}


def _face_perceiver(dim: int, clip_dim: int, heads: int = 1, dim_head: int = 64, depth: int = 4, ff_mult: int = 4) -> dict[str, torch.Tensor]:
    """Upstream `FacePerceiverResampler` keys (ip_adapter/resampler.py naming) under `perceiver_resampler.`."""
    inner = heads * dim_head
    sd = {"proj_in.weight": _randn(dim, clip_dim), "proj_in.bias": torch.zeros(dim),
          "proj_out.weight": _randn(dim, dim), "proj_out.bias": torch.zeros(dim), **_layer_norm("norm_out", dim)}
    for i in range(depth):
        sd.update(_layer_norm(f"layers.{i}.0.norm1", dim))
        sd.update(_layer_norm(f"layers.{i}.0.norm2", dim))
        sd[f"layers.{i}.0.to_q.weight"] = _randn(inner, dim)
        sd[f"layers.{i}.0.to_kv.weight"] = _randn(2 * inner, dim)
        sd[f"layers.{i}.0.to_out.weight"] = _randn(dim, inner)
        sd.update(_layer_norm(f"layers.{i}.1.0", dim))
        sd[f"layers.{i}.1.1.weight"] = _randn(dim * ff_mult, dim)
        sd[f"layers.{i}.1.3.weight"] = _randn(dim, dim * ff_mult)
    return {f"perceiver_resampler.{k}": v for k, v in sd.items()}


def tiny_ip_adapter_state_dict(unet: UNet2DConditionModel, variant: str = "faceid-plus", *, image_embed_dim: int = 16,
                               id_embed_dim: int = 512, clip_hidden_dim: int = 16, num_tokens: int = 4,
                               lora_rank: int = 4, resampler_heads: int = 1, seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    """An in-memory IP-Adapter checkpoint for `unet` with the official layout {"image_proj": …, "ip_adapter": …}.

    variant: "plain" (ip-adapter_sd15: `proj` + `norm` on the CLIP image embedding), "faceid" (MLP on the
    insightface embedding, plus the LoRA every FaceID checkpoint carries) or "faceid-plus"/"faceid-plusv2"
    (MLP + face perceiver resampler over CLIP hidden states, plus LoRA). `ip_adapter` keys are numbered by the
    position of each processor in `unet.attn_processors`, as upstream: "<i>.to_k_ip.weight" at cross-attention
    processors, "<i>.to_{q,k,v,out}_lora.{down,up}.weight" at every processor. With the real sizes
    (id 512, CLIP hidden 1280, LoRA rank 128, 12 resampler heads) it matches the official SD1.5 files in shape."""
    if variant not in IP_ADAPTER_VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(IP_ADAPTER_VARIANTS)}, got {variant!r}")
    cad = unet.config.cross_attention_dim
    with seeded(seed):
        if variant == "plain":
            image_proj = {"proj.weight": _randn(num_tokens * cad, image_embed_dim), "proj.bias": torch.zeros(num_tokens * cad),
                          **_layer_norm("norm", cad)}
        else:
            image_proj = {"proj.0.weight": _randn(2 * id_embed_dim, id_embed_dim, std=0.05), "proj.0.bias": torch.zeros(2 * id_embed_dim),
                          "proj.2.weight": _randn(num_tokens * cad, 2 * id_embed_dim, std=0.05), "proj.2.bias": torch.zeros(num_tokens * cad),
                          **_layer_norm("norm", cad)}
            if variant.startswith("faceid-plus"):
                image_proj.update(_face_perceiver(cad, clip_hidden_dim, heads=resampler_heads))
        ip_adapter: dict[str, torch.Tensor] = {}
        for index, (name, _) in enumerate(unet.attn_processors.items()):
            hidden = _hidden_size(unet, name)
            cross = name.endswith("attn2.processor")
            if cross:
                ip_adapter[f"{index}.to_k_ip.weight"] = _randn(hidden, cad)
                ip_adapter[f"{index}.to_v_ip.weight"] = _randn(hidden, cad)
            if variant != "plain":
                kv_in = cad if cross else hidden
                for proj, d_in in (("to_q", hidden), ("to_k", kv_in), ("to_v", kv_in), ("to_out", hidden)):
                    ip_adapter[f"{index}.{proj}_lora.down.weight"] = _randn(lora_rank, d_in, std=0.05)
                    ip_adapter[f"{index}.{proj}_lora.up.weight"] = _randn(hidden, lora_rank, std=0.05)
    return {"image_proj": image_proj, "ip_adapter": ip_adapter}


def _hidden_size(unet: UNet2DConditionModel, processor_name: str) -> int:
    channels = unet.config.block_out_channels
    if processor_name.startswith("mid_block"):
        return channels[-1]
    block = int(processor_name.split(".")[1])
    return list(reversed(channels))[block] if processor_name.startswith("up_blocks") else channels[block]


def random_sd15_components(seed: int = 0) -> dict:
    """Full-size SD1.5 architecture (UNet 860M, KL VAE, CLIP-L text encoder) with random weights, for timing
    and memory benchmarks without downloads. The byte tokenizer stands in for CLIP's BPE."""
    with seeded(seed):
        unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)
        vae = AutoencoderKL(block_out_channels=[128, 256, 512, 512], layers_per_block=2, latent_channels=4, sample_size=512,
                            down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4)
        text_encoder = CLIPTextModel(CLIPTextConfig(bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=768,
                                                    intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
                                                    vocab_size=1000, hidden_act="quick_gelu"))
    return dict(unet=unet.eval(), vae=vae.eval(), text_encoder=text_encoder.eval(), tokenizer=byte_tokenizer(),
                scheduler=sd15_scheduler(), safety_checker=None, feature_extractor=None, image_encoder=None,
                requires_safety_checker=False)


def tiny_sdxl_components(seed: int = 0) -> dict:
    """Components for `StableDiffusionXLPipeline`: two CLIP text encoders, text-time conditioning, x2 VAE."""
    from transformers import CLIPTextModelWithProjection

    text = dict(bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=16, intermediate_size=32, num_attention_heads=2,
                num_hidden_layers=2, vocab_size=1000, projection_dim=16)
    with seeded(seed):
        unet = UNet2DConditionModel(
            block_out_channels=(8, 16), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
            transformer_layers_per_block=(1, 1), projection_class_embeddings_input_dim=6 * 8 + 16, cross_attention_dim=32,
            norm_num_groups=4,
        )
        vae = AutoencoderKL(block_out_channels=[8, 16], in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=4,
                            down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                            sample_size=IMAGE_SIZE, scaling_factor=0.13025, force_upcast=True)
        encoders = CLIPTextModel(CLIPTextConfig(**text)), CLIPTextModelWithProjection(CLIPTextConfig(**text))
    return dict(unet=unet.eval(), vae=vae.eval(), text_encoder=encoders[0].eval(), text_encoder_2=encoders[1].eval(),
                tokenizer=byte_tokenizer(), tokenizer_2=byte_tokenizer(), scheduler=sd15_scheduler(),
                feature_extractor=None, image_encoder=None)
