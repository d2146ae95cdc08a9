"""InstantID on diffusers' SDXL ControlNet pipeline, with StyleID identity guidance.

InstantID (Wang et al. 2024) conditions SDXL on a face in two ways:
- the identity Resampler turns the 512-d antelopev2 embedding into 16 tokens of the UNet's cross-attention
  width; IP-Adapter attention processors let every UNet cross-attention attend to them (scaled by
  `ip_adapter_scale`) next to the text tokens;
- IdentityNet, a ControlNet that sees the same 16 tokens (no text) and a picture of the 5 face keypoints.

The whole denoising loop is diffusers' own: this pipeline only appends the identity tokens to the prompt
embeddings. The UNet's processors split them off again and IdentityNet keeps just them, so everything the
parent pipeline supports (callbacks, CFG, schedulers, offload) keeps working. The official files load as they
are: `ControlNetModel/` (IdentityNet) and `ip-adapter.bin` = {"image_proj": Resampler, "ip_adapter": processor
weights keyed "<index in unet.attn_processors>.to_k_ip/to_v_ip.weight"}.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from diffusers import ControlNetModel, StableDiffusionXLControlNetPipeline
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from torch import nn

from styleid_guidance.devices import resolve_device
from styleid_guidance.errors import StyleIDError
from styleid_guidance.files.images import ImageInput, load_image
from styleid_guidance.integrations.composition import prepare_guidance_kwargs
from styleid_guidance.options import OFFLINE_DETECTOR

from .keypoints import KPS_COLORS, draw_kps, kps_image
from .presets import DEFAULT_MODELS, instantid_preset
from .resampler import resampler_from_upstream
from .adapter_files import load_or_explain, load_state_dict_file

if TYPE_CHECKING:
    from styleid_guidance.integrations.callback import IdentityGuidanceCallback

    from .face_embeddings import FaceEmbedder

__all__ = ["KPS_COLORS", "NUM_ID_TOKENS", "IdentityNet", "InstantIDAttnProcessor", "InstantIDStylizer",
           "StableDiffusionXLInstantIDPipeline", "draw_kps", "kps_image", "resize_face_image"]

NUM_ID_TOKENS = 16
_MODELS = DEFAULT_MODELS["instantid"]  # the paper's weights (what `generate` records)
# Upstream defaults (infer.py) when no strength level is given. The adapter scale is set when the adapter is
# loaded (infer.py's set_ip_adapter_scale(0.8)) and afterwards only by set_ip_adapter_scale or a call that
# passes ip_adapter_scale / strength_level.
DEFAULTS = {"ip_adapter_scale": 0.8, "controlnet_conditioning_scale": 0.8, "guidance_scale": 5.0,
            "negative_prompt": None, "num_inference_steps": 30}


class IdentityNet(ControlNetModel):
    """InstantID's IdentityNet: a plain SDXL ControlNet whose cross-attention sees only the identity tokens.

    The pipeline hands every model `cat(text tokens, id tokens)`; this keeps the trailing `num_id_tokens`.
    Load the official weights with `IdentityNet.from_pretrained(".../ControlNetModel")`."""

    num_id_tokens: int = NUM_ID_TOKENS

    def forward(self, sample, timestep, encoder_hidden_states, *args, **kwargs):
        return super().forward(sample, timestep, encoder_hidden_states[:, -self.num_id_tokens:], *args, **kwargs)


class InstantIDAttnProcessor(nn.Module):
    """Cross-attention over the text tokens plus `scale` × attention over the trailing identity tokens, which
    get their own key/value projections (`to_k_ip`, `to_v_ip`: the upstream parameter names)."""

    def __init__(self, hidden_size: int, cross_attention_dim: int, num_tokens: int = NUM_ID_TOKENS, scale: float = 1.0):
        super().__init__()
        self.num_tokens = num_tokens
        self.scale = scale
        self.to_k_ip = nn.Linear(cross_attention_dim, hidden_size, bias=False)
        self.to_v_ip = nn.Linear(cross_attention_dim, hidden_size, bias=False)

    def forward(self, attn: Attention, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs):
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        image_shape = hidden_states.shape if hidden_states.ndim == 4 else None
        if image_shape is not None:
            b, c, h, w = image_shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        batch = hidden_states.shape[0]
        text, ident = encoder_hidden_states[:, : -self.num_tokens], encoder_hidden_states[:, -self.num_tokens:]
        if attn.norm_cross:
            text = attn.norm_encoder_hidden_states(text)
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, text.shape[1], batch)
            attention_mask = attention_mask.view(batch, attn.heads, -1, attention_mask.shape[-1])

        def heads(x):
            return x.view(batch, -1, attn.heads, x.shape[-1] // attn.heads).transpose(1, 2)

        query = heads(attn.to_q(hidden_states))
        out = F.scaled_dot_product_attention(query, heads(attn.to_k(text)), heads(attn.to_v(text)), attn_mask=attention_mask)
        if self.scale != 0:
            ident = ident.to(self.to_k_ip.weight.dtype)
            id_out = F.scaled_dot_product_attention(query, heads(self.to_k_ip(ident)), heads(self.to_v_ip(ident)))
            out = out + self.scale * id_out
        out = out.transpose(1, 2).reshape(batch, -1, query.shape[1] * query.shape[-1]).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if image_shape is not None:
            out = out.transpose(-1, -2).reshape(image_shape)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


class StableDiffusionXLInstantIDPipeline(StableDiffusionXLControlNetPipeline):
    """`StableDiffusionXLControlNetPipeline` + InstantID identity conditioning + optional StyleID guidance.

    >>> pipe = StableDiffusionXLInstantIDPipeline.from_pretrained(sdxl, controlnet=IdentityNet.from_pretrained(cn_dir))
    >>> pipe.load_ip_adapter_instantid("ip-adapter.bin")
    >>> pipe(prompt, image_embeds=face.embedding, image=draw_kps(size, face.landmarks), strength_level=3,
    ...      identity_guidance=IdentityGuidanceCallback(StyleIDLoss(encoder, reference=photo)))
    """

    image_proj_model: nn.Module | None = None

    def load_ip_adapter_instantid(self, path_or_state_dict: str | os.PathLike | dict, scale: float = DEFAULTS["ip_adapter_scale"]) -> None:
        """Load `ip-adapter.bin` ({"image_proj": ..., "ip_adapter": ...}): the Resampler and the UNet's
        identity attention processors. Loading twice replaces the previous adapter."""
        state = load_state_dict_file(path_or_state_dict, "InstantID ip-adapter.bin")
        if not {"image_proj", "ip_adapter"} <= set(state):
            raise StyleIDError(f"{path_or_state_dict if not isinstance(path_or_state_dict, dict) else 'state dict'}: "
                               "expected keys 'image_proj' and 'ip_adapter' (the InstantID ip-adapter.bin layout)")
        resampler = resampler_from_upstream(state["image_proj"], "ip-adapter.bin image_proj")
        if resampler.proj_out.out_features != self.unet.config.cross_attention_dim:
            raise StyleIDError(f"ip-adapter.bin makes {resampler.proj_out.out_features}-d tokens but this UNet's cross-attention "
                               f"is {self.unet.config.cross_attention_dim}-d; use an SDXL base model")
        num_tokens = resampler.latents.shape[1]
        self.image_proj_model = resampler.to(self.unet.device, self.unet.dtype)
        self._set_id_processors(state["ip_adapter"], num_tokens, scale)
        if isinstance(self.controlnet, IdentityNet):
            self.controlnet.num_id_tokens = num_tokens

    def _set_id_processors(self, weights: dict[str, torch.Tensor], num_tokens: int, scale: float) -> None:
        processors, expected = {}, set()
        for index, name in enumerate(self.unet.attn_processors):
            attn = self.unet.get_submodule(name.removesuffix(".processor"))
            if name.endswith("attn1.processor"):  # self-attention: plain
                processors[name] = AttnProcessor2_0()
                continue
            with torch.random.fork_rng(devices=[]):  # the random init is overwritten below: leave the caller's RNG alone
                proc = InstantIDAttnProcessor(attn.to_k.out_features, attn.to_k.in_features, num_tokens, scale)
            for param in ("to_k_ip", "to_v_ip"):
                key = f"{index}.{param}.weight"
                expected.add(key)
                if key not in weights or weights[key].shape != getattr(proc, param).weight.shape:
                    raise StyleIDError(f"ip-adapter.bin ip_adapter: {key} is missing or has the wrong shape for this UNet; "
                                       "use the InstantID file made for SDXL")
                getattr(proc, param).weight.data.copy_(weights[key])
            processors[name] = proc.to(self.unet.device, self.unet.dtype)
        unexpected = set(weights) - expected
        if unexpected:
            raise StyleIDError(f"ip-adapter.bin ip_adapter: unexpected keys {sorted(unexpected)[:3]}; the file does not match this UNet")
        self.unet.set_attn_processor(processors)

    def set_ip_adapter_scale(self, scale: float) -> None:
        for proc in self.unet.attn_processors.values():
            if isinstance(proc, InstantIDAttnProcessor):
                proc.scale = float(scale)

    def encode_identity(self, image_embeds, num_images: int, do_cfg: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Face embedding(s) [512] / [B, 512] → identity tokens [B·num_images, 16, D] (and the unconditional
        tokens, the Resampler applied to a zero embedding, as upstream)."""
        proj = self.image_proj_model
        device = self._execution_device
        proj.to(device)
        emb = torch.as_tensor(np.asarray(image_embeds) if not torch.is_tensor(image_embeds) else image_embeds)
        emb = emb.reshape(-1, 1, proj.proj_in.in_features).to(device, proj.proj_in.weight.dtype)
        tokens = proj(emb).repeat_interleave(num_images, dim=0)
        negative = proj(torch.zeros_like(emb)).repeat_interleave(num_images, dim=0) if do_cfg else None
        return tokens, negative

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        image_embeds: torch.Tensor | np.ndarray | None = None,
        image: PIL.Image.Image | torch.Tensor | None = None,
        *,
        strength_level: int | None = None,
        ip_adapter_scale: float | None = None,
        controlnet_conditioning_scale: float | None = None,
        guidance_scale: float | None = None,
        negative_prompt: str | list[str] | None = None,
        num_inference_steps: int | None = None,
        identity_guidance: IdentityGuidanceCallback | None = None,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
        prompt_2: str | list[str] | None = None,
        negative_prompt_2: str | list[str] | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        pooled_prompt_embeds: torch.Tensor | None = None,
        negative_pooled_prompt_embeds: torch.Tensor | None = None,
        num_images_per_prompt: int = 1,
        clip_skip: int | None = None,
        **kwargs: Any,
    ):
        """Generate. `image_embeds`: the antelopev2 face embedding; `image`: `draw_kps(...)` of the face.
        `strength_level` 1..7 fills the paper's settings (explicit arguments win); without `ip_adapter_scale` or
        `strength_level` the adapter keeps its current scale (`set_ip_adapter_scale`). `identity_guidance`: an
        `IdentityGuidanceCallback` (or None). Other keyword arguments go to the parent pipeline."""
        if self.image_proj_model is None:
            raise StyleIDError("no InstantID adapter loaded; call pipe.load_ip_adapter_instantid('ip-adapter.bin') first")
        if not isinstance(self.controlnet, IdentityNet):
            raise StyleIDError("controlnet must be an IdentityNet; load it with IdentityNet.from_pretrained('.../ControlNetModel')")
        if image_embeds is None or image is None:
            raise StyleIDError("InstantID needs image_embeds (the face embedding) and image (draw_kps of the face landmarks)")
        explicit = dict(ip_adapter_scale=ip_adapter_scale, controlnet_conditioning_scale=controlnet_conditioning_scale,
                        guidance_scale=guidance_scale, negative_prompt=negative_prompt, num_inference_steps=num_inference_steps)
        preset = instantid_preset(strength_level) if strength_level is not None else {}
        given = {**preset, **{k: v for k, v in explicit.items() if v is not None}}
        cfg = {**DEFAULTS, **given}
        if "ip_adapter_scale" in given:  # as upstream: a call changes the scale only when asked to
            self.set_ip_adapter_scale(given["ip_adapter_scale"])

        do_cfg = cfg["guidance_scale"] > 1 and self.unet.config.time_cond_proj_dim is None
        prompt_embeds, negative_prompt_embeds, pooled_prompt_embeds, negative_pooled_prompt_embeds = self.encode_prompt(
            prompt, prompt_2, self._execution_device, num_images_per_prompt, do_cfg,
            cfg["negative_prompt"], negative_prompt_2, prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_prompt_embeds, pooled_prompt_embeds=pooled_prompt_embeds,
            negative_pooled_prompt_embeds=negative_pooled_prompt_embeds, clip_skip=clip_skip,
        )
        id_tokens, negative_id_tokens = self.encode_identity(image_embeds, num_images_per_prompt, do_cfg)
        if id_tokens.shape[0] not in (1, prompt_embeds.shape[0]):
            raise StyleIDError(f"got {id_tokens.shape[0]} face embeddings for {prompt_embeds.shape[0]} prompts; pass one or one per prompt")
        prompt_embeds = torch.cat([prompt_embeds, id_tokens.expand(prompt_embeds.shape[0], -1, -1).to(prompt_embeds.dtype)], dim=1)
        if do_cfg:
            negative_prompt_embeds = torch.cat(
                [negative_prompt_embeds, negative_id_tokens.expand(negative_prompt_embeds.shape[0], -1, -1).to(prompt_embeds.dtype)], dim=1)

        return super().__call__(
            image=image,
            prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_prompt_embeds if do_cfg else None,
            pooled_prompt_embeds=pooled_prompt_embeds,
            negative_pooled_prompt_embeds=negative_pooled_prompt_embeds if do_cfg else None,
            guidance_scale=cfg["guidance_scale"],
            num_inference_steps=cfg["num_inference_steps"],
            controlnet_conditioning_scale=cfg["controlnet_conditioning_scale"],
            **prepare_guidance_kwargs(self, identity_guidance, callback_on_step_end, callback_on_step_end_tensor_inputs),
            **kwargs,
        )


def resize_face_image(image: PIL.Image.Image, max_side: int = 1280, min_side: int = 1024, multiple: int = 64) -> PIL.Image.Image:
    """InstantID's `resize_img` rule for the face photo (upstream detects, embeds and draws keypoints on this):
    scale the short side to `min_side`, then rescale so the long side is `max_side` (PIL bilinear), then floor
    both sides to multiples of `multiple` (bilinear again). A 512² photo becomes 1280², 768×1024 960×1280."""
    w, h = image.size
    ratio = min_side / min(w, h)
    w, h = round(ratio * w), round(ratio * h)
    ratio = max_side / max(w, h)
    first = image.resize((round(ratio * w), round(ratio * h)), PIL.Image.BILINEAR)
    final = (max(round(ratio * w) // multiple, 1) * multiple, max(round(ratio * h) // multiple, 1) * multiple)
    return first.resize(final, PIL.Image.BILINEAR)


class InstantIDStylizer:
    """Face + prompt → stylised face with InstantID (antelopev2 embedding + keypoints of the same face).

    The face photo goes through upstream's front end: `resize_face_image`, insightface antelopev2 detection,
    the largest face, its raw embedding and `draw_kps` of its keypoints. `size`: the output side (None: the
    resized photo's size, as upstream generates); other sizes see the keypoints through a centre crop."""

    def __init__(self, pipe: StableDiffusionXLInstantIDPipeline, face_embedder: FaceEmbedder, size: int | None = 1024,
                 upstream_resize: bool = True, call_defaults: dict | None = None):
        self.pipe = pipe
        self.face_embedder = face_embedder
        self.size = size
        self.upstream_resize = upstream_resize
        self.call_defaults = dict(call_defaults or {})

    @classmethod
    def tiny(cls, device: str | torch.device = "cpu") -> "InstantIDStylizer":
        """Random tiny SDXL + IdentityNet + adapter + face model: offline, seconds on CPU, 64-px images."""
        from styleid_guidance.tiny.controlnet import tiny_instantid_state_dict, tiny_sdxl_controlnet_components
        from styleid_guidance.tiny.face_embedder import TinyFaceEmbedder

        pipe = StableDiffusionXLInstantIDPipeline(**tiny_sdxl_controlnet_components())
        pipe.load_ip_adapter_instantid(tiny_instantid_state_dict(pipe.unet))
        pipe.set_progress_bar_config(disable=True)
        # no upstream resize: MTCNN on a 1280-px copy of every photo would dominate the tiny model's seconds
        return cls(pipe.to(device), TinyFaceEmbedder(detector=OFFLINE_DETECTOR), size=64, upstream_resize=False)

    @classmethod
    def from_pretrained(
        cls,
        base_model: str = _MODELS["base_model"],
        instantid: str = _MODELS["instantid"],
        face_model: str = _MODELS["face_model"],
        face_model_root: str | None = None,
        detector: str | None = None,
        device: str | torch.device | None = None,
        torch_dtype: torch.dtype | None = None,
    ) -> "InstantIDStylizer":
        """`base_model`: an SDXL checkpoint (the paper uses YamerMIX_v8); `instantid`: a folder (or Hub id) holding
        `ControlNetModel/` and `ip-adapter.bin`; `face_model`: antelopev2 / buffalo_l / a pack folder / an .onnx
        path, under `face_model_root/models/` (default ~/.insightface); `detector`: None for the pack's own
        detector (upstream), "retinaface" / "mtcnn" to use those instead."""
        from styleid_guidance.hub.resolve import resolve_model_dir

        from .face_embeddings import load_face_embedder

        device = resolve_device(device)
        dtype = torch_dtype or (torch.float16 if device.type == "cuda" else torch.float32)
        folder = resolve_model_dir(instantid, kind="InstantID", allow_patterns=("ControlNetModel/*", "ip-adapter.bin"))
        if not (folder / "ControlNetModel" / "config.json").is_file() or not (folder / "ip-adapter.bin").is_file():
            raise StyleIDError(f"{folder}: expected ControlNetModel/ and ip-adapter.bin inside (the InstantX/InstantID layout)")
        face_embedder = load_face_embedder(face_model, root=face_model_root, detector=detector, device=device)
        controlnet = load_or_explain(lambda: IdentityNet.from_pretrained(folder / "ControlNetModel", torch_dtype=dtype),
                                     "IdentityNet", folder / "ControlNetModel", "instantid")
        pipe = load_or_explain(lambda: StableDiffusionXLInstantIDPipeline.from_pretrained(base_model, controlnet=controlnet, torch_dtype=dtype),
                               "SDXL base model", base_model, "base_model")
        pipe.load_ip_adapter_instantid(folder / "ip-adapter.bin")
        return cls(pipe.to(device), face_embedder)

    def _photo(self, face: ImageInput) -> PIL.Image.Image:
        photo = load_image(face)
        return resize_face_image(photo) if self.upstream_resize else photo

    def call_settings(self, strength_level: int, face: ImageInput | None = None) -> dict[str, Any]:
        """The level's preset, the output size (`size`², or with `size=None` the resized photo's, given `face`),
        then `call_defaults`."""
        size = {} if self.size is None else {"height": self.size, "width": self.size}
        if self.size is None and face is not None:
            width, height = self._photo(face).size
            size = {"height": height, "width": width}
        return {**instantid_preset(strength_level), **size, **self.call_defaults}

    def __call__(self, face: ImageInput, prompt: str, strength_level: int = 4,
                 identity_guidance: IdentityGuidanceCallback | None = None, seed: int = 0, **overrides: Any) -> PIL.Image.Image:
        photo = self._photo(face)
        info = self.face_embedder(photo, name="face image")
        overrides = {**self.call_defaults, **overrides}
        default = photo.size if self.size is None else (self.size, self.size)
        width, height = overrides.pop("width", default[0]), overrides.pop("height", default[1])
        generator = torch.Generator("cpu").manual_seed(seed)
        result = self.pipe(prompt, image_embeds=info.embedding, image=kps_image(photo.size, info.landmarks, (width, height)),
                           strength_level=strength_level, identity_guidance=identity_guidance, generator=generator,
                           height=height, width=width, **overrides)
        return result.images[0]
