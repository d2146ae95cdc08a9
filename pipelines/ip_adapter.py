"""IP-Adapter face stylisation on SD1.5 / SDXL through diffusers' own `load_ip_adapter`, with identity guidance.

Variants (detected from the checkpoint's keys, as diffusers does):
- image IP-Adapters ("plain", "plus", "full"): the face photo goes through the CLIP image encoder
  (`ip_adapter_image`);
- "faceid": an insightface embedding of the face, passed as `ip_adapter_image_embeds` (zeros as the negative
  under CFG);
- "faceid-plus" (the paper's StyleBench-S generator, `ip-adapter-faceid-plusv2_sd15.bin`): the insightface
  embedding plus CLIP ViT-H hidden states of the 224-px aligned face crop, set on the projection layer
  (`clip_embeds`; `shortcut` for v2).

`strength_level=1..7` selects the paper's schedule (adapter scale 0.01·2^(8−l), CFG = l, DDIM 25 steps, 512²).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import PIL.Image
import torch

from styleid_guidance.devices import resolve_device
from styleid_guidance.errors import StyleIDError
from styleid_guidance.files.images import ImageInput, load_image
from styleid_guidance.options import OFFLINE_DETECTOR

from .presets import DEFAULT_MODELS, ip_adapter_preset
from .adapter_files import load_state_dict_file

if TYPE_CHECKING:
    from styleid_guidance.integrations.callback import IdentityGuidanceCallback

    from .face_embeddings import FaceEmbedder

_MODELS = DEFAULT_MODELS["ip_adapter"]  # the paper's weights (what `generate` records)
DEFAULT_BASE = _MODELS["base_model"]
DEFAULT_VAE = _MODELS["vae"]
DEFAULT_ADAPTER = _MODELS["ip_adapter"]
DEFAULT_WEIGHT = _MODELS["weight_name"]
DEFAULT_IMAGE_ENCODER = _MODELS["image_encoder"]
DEFAULT_FACE_MODEL = _MODELS["face_model"]
FACE_CROP_SIZE = 224  # upstream FaceID-Plus feeds CLIP the insightface-aligned 224-px crop


def ip_adapter_variant(state_dict: dict) -> str:
    """"plain" | "plus" | "full" | "faceid" | "faceid-plus" from an IP-Adapter checkpoint's image_proj keys."""
    if not isinstance(state_dict, dict) or not {"image_proj", "ip_adapter"} <= set(state_dict):
        raise StyleIDError("not an IP-Adapter checkpoint: expected the keys 'image_proj' and 'ip_adapter'")
    keys = state_dict["image_proj"]
    if "proj.weight" in keys:
        return "plain"
    if "proj.3.weight" in keys:
        return "full"
    if "perceiver_resampler.proj_in.weight" in keys:
        return "faceid-plus"
    if "norm.weight" in keys and "proj.0.weight" in keys:
        return "faceid"
    if "latents" in keys:
        return "plus"
    raise StyleIDError("unrecognised IP-Adapter checkpoint layout (image_proj keys match no known variant)")


def read_ip_adapter_weights(path: str | os.PathLike) -> dict:
    """An IP-Adapter file (.bin / .safetensors) as {"image_proj": …, "ip_adapter": …}, loaded safely."""
    path = Path(path)
    if not path.is_file():
        raise StyleIDError(f"{path}: IP-Adapter weights not found; give ip_adapter as a folder or Hub id and "
                           "weight_name as the checkpoint file inside it")
    state = load_state_dict_file(path, "IP-Adapter weights")
    ip_adapter_variant(state)  # validates the layout
    return {key: state[key] for key in ("image_proj", "ip_adapter")}


def resolve_ip_adapter(adapter: str | os.PathLike | dict, weight_name: str | None = None, subfolder: str | None = None) -> dict:
    """A state dict, a file, a local folder (+ weight_name) or a Hub id (+ weight_name) → state dict."""
    if isinstance(adapter, dict):
        ip_adapter_variant(adapter)
        return adapter
    path = Path(adapter).expanduser()
    if path.is_file():
        return read_ip_adapter_weights(path)
    if not weight_name:
        raise StyleIDError(f"{adapter}: give the checkpoint file name inside it as weight_name (e.g. {DEFAULT_WEIGHT!r})")
    from styleid_guidance.hub.resolve import resolve_model_dir

    inner = f"{subfolder}/{weight_name}" if subfolder else weight_name
    folder = resolve_model_dir(adapter, kind="IP-Adapter", allow_patterns=(inner,))
    return read_ip_adapter_weights(folder / inner)


def load_ip_adapter(pipe: Any, adapter: str | os.PathLike | dict, weight_name: str | None = None, subfolder: str | None = None) -> str:
    """Load an IP-Adapter into an SD1.5 / SDXL pipeline with diffusers' `load_ip_adapter` (which also applies
    the FaceID LoRA); returns the variant. The image encoder, where needed, is set separately."""
    state = resolve_ip_adapter(adapter, weight_name, subfolder)
    variant = ip_adapter_variant(state)
    try:
        pipe.load_ip_adapter(state, subfolder=None, weight_name=None, image_encoder_folder=None)
    except (RuntimeError, KeyError, ValueError) as err:
        name = getattr(adapter, "__fspath__", lambda: str(adapter))() if not isinstance(adapter, dict) else "the IP-Adapter state dict"
        raise StyleIDError(f"{name}: does not fit this {type(pipe.unet).__name__} ({str(err).splitlines()[0][:160]}); "
                           "use the SD1.5 adapter with SD1.5 and the SDXL one with SDXL") from None
    return variant


def face_id_embeds(embedding: torch.Tensor, do_cfg: bool) -> torch.Tensor:
    """insightface embedding [512] → FaceID `ip_adapter_image_embeds` entry [(2|1), 1, 1, 512]: L2-normalised
    (upstream uses `normed_embedding`), zeros as the negative under CFG."""
    e = torch.nn.functional.normalize(embedding.float().reshape(1, 1, 1, -1), dim=-1)
    return torch.cat([torch.zeros_like(e), e]) if do_cfg else e


class IPAdapterStylizer:
    """Stylise a face with IP-Adapter (FaceID-Plus by default) and, optionally, StyleID identity guidance.

        stylizer = IPAdapterStylizer.from_pretrained()          # or .tiny() offline
        image = stylizer(face, STYLE_PROMPTS["pixar"], strength_level=4, identity_guidance=cb, seed=0)
    """

    def __init__(self, pipe: Any, variant: str, face_embedder: FaceEmbedder | None = None, faceid_v2: bool = False,
                 call_defaults: dict | None = None):
        if variant.startswith("faceid") and face_embedder is None:
            raise StyleIDError(f"IP-Adapter {variant} needs a face embedder (insightface buffalo_l / antelopev2)")
        if variant != "faceid" and getattr(pipe, "image_encoder", None) is None:
            raise StyleIDError(f"IP-Adapter {variant} needs a CLIP image encoder: register one as pipe.image_encoder "
                               f"(from_pretrained(image_encoder=...), e.g. {DEFAULT_IMAGE_ENCODER!r})")
        self.pipe = pipe
        self.variant = variant
        self.face_embedder = face_embedder
        self.faceid_v2 = faceid_v2
        self.call_defaults = dict(call_defaults or {})

    @property
    def device(self) -> torch.device:
        return self.pipe._execution_device

    # -- construction ------------------------------------------------------------------------------------

    @classmethod
    def tiny(cls, device: str | torch.device = "cpu", variant: str = "faceid-plus") -> "IPAdapterStylizer":
        """Random tiny SD1.5 + IP-Adapter (+ tiny CLIP image encoder and face model): offline, 64-px images."""
        from diffusers import StableDiffusionPipeline

        from styleid_guidance.tiny.face_embedder import TinyFaceEmbedder
        from styleid_guidance.tiny.sd import tiny_clip_image_encoder, tiny_ip_adapter_state_dict, tiny_sd15_components

        pipe = StableDiffusionPipeline(**tiny_sd15_components())
        variant = load_ip_adapter(pipe, tiny_ip_adapter_state_dict(pipe.unet, variant))
        if variant != "faceid":
            encoder, processor = tiny_clip_image_encoder()
            pipe.register_modules(image_encoder=encoder, feature_extractor=processor)
        pipe.set_progress_bar_config(disable=True)
        face = TinyFaceEmbedder(detector=OFFLINE_DETECTOR) if variant.startswith("faceid") else None
        return cls(pipe.to(device), variant, face, call_defaults={"height": 64, "width": 64, "num_inference_steps": 10})

    @classmethod
    def from_pretrained(
        cls,
        base_model: str | os.PathLike = DEFAULT_BASE,
        *,
        ip_adapter: str | os.PathLike | dict = DEFAULT_ADAPTER,
        weight_name: str | None = DEFAULT_WEIGHT,
        subfolder: str | None = None,
        image_encoder: str | os.PathLike | None = DEFAULT_IMAGE_ENCODER,
        vae: str | os.PathLike | None = DEFAULT_VAE,
        face_model: str = DEFAULT_FACE_MODEL,
        face_root: str | None = None,
        detector: str | None = None,  # None: the insightface pack's own detector, as upstream
        faceid_v2: bool | None = None,
        device: str | torch.device | None = None,
        torch_dtype: torch.dtype | None = None,
    ) -> "IPAdapterStylizer":
        """Real weights from Hub ids or local folders. The paper's set-up is the default: Realistic Vision V4
        + sd-vae-ft-mse + IP-Adapter FaceID-Plus v2 + CLIP ViT-H + insightface buffalo_l, DDIM. An SDXL base
        with an SDXL adapter works the same way (`vae=None` keeps the base's VAE)."""
        from diffusers import AutoencoderKL, DiffusionPipeline, StableDiffusionPipeline, StableDiffusionXLPipeline
        from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

        from styleid_guidance.hub.resolve import resolve_model_dir

        from .presets import ddim_like, sd15_scheduler

        device = resolve_device(device)
        dtype = torch_dtype or (torch.float16 if device.type == "cuda" else torch.float32)
        parts = ("unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler", "feature_extractor")
        base_dir = resolve_model_dir(base_model, kind="base diffusion model",
                                     allow_patterns=("model_index.json", *(f"{c}/*.{ext}" for c in parts for ext in ("json", "txt", "safetensors"))))
        extra: dict[str, Any] = {}
        try:
            index = json.loads((base_dir / "model_index.json").read_text())
        except (OSError, ValueError):
            raise StyleIDError(f"{base_model}: no readable model_index.json; give base_model as a diffusers-format SD1.5 / SDXL folder or Hub id") from None
        if "safety_checker" in index:  # the paper's generations use none; its weights are not downloaded
            extra.update(safety_checker=None, requires_safety_checker=False)
        if vae is not None:
            vae_dir = resolve_model_dir(vae, kind="VAE")
            extra["vae"] = AutoencoderKL.from_pretrained(vae_dir, torch_dtype=dtype)
        try:
            pipe = DiffusionPipeline.from_pretrained(base_dir, torch_dtype=dtype, use_safetensors=True, **extra)
        except (OSError, ValueError) as err:
            raise StyleIDError(f"{base_model}: cannot load a diffusers pipeline from it ({str(err).splitlines()[0][:160]})") from None
        if not isinstance(pipe, (StableDiffusionPipeline, StableDiffusionXLPipeline)):
            raise StyleIDError(f"{base_model}: is a {type(pipe).__name__}; IP-Adapter stylisation needs an SD1.5 or SDXL base")
        if isinstance(pipe, StableDiffusionPipeline):
            pipe.scheduler = sd15_scheduler()
        else:
            pipe.scheduler = ddim_like(pipe.scheduler)
        variant = load_ip_adapter(pipe, ip_adapter, weight_name, subfolder)
        if variant != "faceid":
            if image_encoder is None:
                raise StyleIDError(f"IP-Adapter {variant} needs a CLIP image encoder: pass image_encoder (e.g. {DEFAULT_IMAGE_ENCODER!r})")
            # only the transformers weights: the laion repo also holds open_clip copies of the same model
            enc_dir = resolve_model_dir(image_encoder, kind="CLIP image encoder",
                                        allow_patterns=("*.json", "model.safetensors"))
            encoder = CLIPVisionModelWithProjection.from_pretrained(enc_dir, torch_dtype=dtype)
            pipe.register_modules(image_encoder=encoder, feature_extractor=CLIPImageProcessor())
        face = None
        if variant.startswith("faceid"):
            from .face_embeddings import load_face_embedder

            face = load_face_embedder(face_model, root=face_root, detector=detector, device=device)
        if faceid_v2 is None:
            faceid_v2 = "plusv2" in str(weight_name or "")
        return cls(pipe.to(device), variant, face, faceid_v2=faceid_v2)

    # -- generation --------------------------------------------------------------------------------------

    def call_settings(self, strength_level: int, face: ImageInput | None = None) -> dict[str, Any]:
        """The level's preset (its 512² size included), then `call_defaults`; the size does not follow the photo."""
        return {**ip_adapter_preset(strength_level), **self.call_defaults}

    def adapter_inputs(self, face: PIL.Image.Image, do_cfg: bool) -> dict[str, Any]:
        """The pipeline kwargs that condition on `face` for this adapter variant."""
        if not self.variant.startswith("faceid"):
            return {"ip_adapter_image": face}
        from .face_embeddings import align_face

        info = self.face_embedder(face, name="face image")
        dtype = self.pipe.unet.dtype
        inputs = {"ip_adapter_image_embeds": [face_id_embeds(info.embedding, do_cfg).to(self.device, dtype)]}
        if self.variant == "faceid-plus":
            crop = PIL.Image.fromarray(align_face(face, info.landmarks, size=FACE_CROP_SIZE))
            clip_embeds = self.pipe.prepare_ip_adapter_image_embeds([crop], None, self.device, 1, do_cfg)[0]
            proj = self.pipe.unet.encoder_hid_proj.image_projection_layers[0]
            proj.clip_embeds = clip_embeds.to(dtype)
            proj.shortcut = self.faceid_v2
        return inputs

    def __call__(
        self,
        face: ImageInput,
        prompt: str,
        strength_level: int = 4,
        identity_guidance: IdentityGuidanceCallback | None = None,
        seed: int = 0,
        *,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
        **overrides: Any,
    ) -> PIL.Image.Image:
        from styleid_guidance.integrations.composition import prepare_guidance_kwargs

        face = load_image(face)
        settings = {**self.call_settings(strength_level), **overrides}
        self.pipe.set_ip_adapter_scale(float(settings.pop("ip_adapter_scale")))
        do_cfg = float(settings["guidance_scale"]) > 1.0
        settings.setdefault("num_images_per_prompt", 1)
        if settings["num_images_per_prompt"] != 1:
            raise StyleIDError("num_images_per_prompt must be 1 for IP-Adapter stylisation; call once per seed")
        inputs = self.adapter_inputs(face, do_cfg)
        generator = torch.Generator("cpu").manual_seed(int(seed))
        guidance = prepare_guidance_kwargs(self.pipe, identity_guidance, callback_on_step_end, callback_on_step_end_tensor_inputs)
        out = self.pipe(prompt=prompt, generator=generator, output_type="pil", **settings, **inputs, **guidance)
        return out.images[0]
