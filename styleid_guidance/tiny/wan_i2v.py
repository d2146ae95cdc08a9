"""A tiny random Wan 2.1 image-to-video pipeline that reads text prompts, for the video stylizer
(`styleid_guidance.pipelines.wan_video.WanVideoStylizer.tiny()`).

The VAE, transformer, CLIP image encoder and scheduler are `video.tiny_wan(image_to_video=True)`'s; added here are
a text side, so that the stylizer's prompts (style and strength level) reach the transformer as they do with real
weights: the byte-level tokenizer of the other tiny pipelines (no vocabulary files; it stands in for Wan's UMT5
SentencePiece tokenizer) and a two-layer random `UMT5EncoderModel` of the tiny transformer's text width.
"""
from __future__ import annotations

import torch
from diffusers import WanImageToVideoPipeline
from transformers import UMT5Config, UMT5EncoderModel

from .rng import seeded
from .sd import byte_tokenizer
from .video import WAN_TEXT_DIM, tiny_wan

SIZE = 64  # about 64² px per frame; each side a multiple of 16 (the VAE's 8x times the 2x patch)
FRAMES = 5  # 1 + 4: two latent frames through the causal VAE (the first decodes to one frame, the second to four)
FPS = 8
TEXT_TOKENS = 512  # Wan's max_sequence_length; a byte per token, so the level's whole sentence is read


def tiny_wan_i2v_pipeline(seed: int = 0, device: str | torch.device = "cpu") -> WanImageToVideoPipeline:
    """An unmodified `diffusers.WanImageToVideoPipeline` on the tiny Wan 2.1 I2V components plus a tokenizer and
    text encoder (random weights, FlowMatchEuler), progress bar off."""
    base = tiny_wan(image_to_video=True, seed=seed)
    tokenizer = byte_tokenizer(max_length=TEXT_TOKENS)
    with seeded(seed):
        text_encoder = UMT5EncoderModel(UMT5Config(d_model=WAN_TEXT_DIM, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                                                   vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                                   eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=0)).eval()
    pipe = WanImageToVideoPipeline(**{**base.components, "tokenizer": tokenizer, "text_encoder": text_encoder})
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)
