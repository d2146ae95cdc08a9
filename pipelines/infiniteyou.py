"""InfiniteYou on diffusers' FLUX ControlNet pipeline, with StyleID identity guidance.

InfiniteYou (Jiang et al. 2025) injects identity into FLUX.1-dev through InfuseNet: a FLUX ControlNet whose
text stream is replaced by identity tokens — the Resampler turns a 512-d ArcFace (facexlib IR-SE50) embedding of
the 112-px aligned face into 8 tokens of 4096 (T5's width) — and whose control image is a keypoint picture (or
black). Its residuals are added to the FLUX transformer, which still sees the real prompt.

The loop is diffusers' `FluxControlNetPipeline`; `InfuseNet` only swaps its own inputs (text tokens → identity
tokens, text ids → zeros, distilled guidance → `infusenet_guidance_scale`, 1.0 upstream) for the duration of one
call. The official files load as they are: `InfuseNetModel/` (a FluxControlNetModel folder) and
`image_proj_model.bin` = {"image_proj": Resampler}.

Memory (FLUX.1-dev bf16, per upstream): ~43 GB peak; `cpu_offload=True` (diffusers model offload) ~30 GB;
`quantize_8bit=True` (optimum-quanto int8 weights on the transformer, InfuseNet and T5) ~24 GB; both ~16 GB.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np
import PIL.Image
import torch
from diffusers import FluxControlNetModel, FluxControlNetPipeline
from torch import nn

from styleid_guidance.devices import resolve_device
from styleid_guidance.errors import StyleIDError
from styleid_guidance.files.images import ImageInput, load_image
from styleid_guidance.integrations.composition import prepare_guidance_kwargs
from styleid_guidance.options import OFFLINE_DETECTOR

from .keypoints import draw_kps, resize_and_pad
from .presets import DEFAULT_MODELS, infiniteyou_preset
from .quantize import quantize_flux_8bit
from .resampler import resampler_from_upstream
from .adapter_files import load_or_explain, load_state_dict_file

if TYPE_CHECKING:
    from styleid_guidance.integrations.callback import IdentityGuidanceCallback

    from .face_embeddings import FaceEmbedder

_MODELS = DEFAULT_MODELS["infiniteyou"]  # the paper's weights (what `generate` records)
INSIGHTFACE_SUBFOLDER = "supports/insightface"  # where the InfiniteYou repo keeps antelopev2 (upstream's root)
# Upstream defaults (test.py) when no strength level is given.
DEFAULTS = {"infusenet_conditioning_scale": 1.0, "guidance_scale": 3.5, "num_inference_steps": 30, "height": 1152, "width": 864}


class InfuseNet(FluxControlNetModel):
    """A FluxControlNetModel that attends to identity tokens instead of the prompt.

    Load the official weights with `InfuseNet.from_pretrained(".../InfuseNetModel")`; use `with
    net.identity(tokens):` around a pipeline call (InfiniteYouPipeline does)."""

    _id_tokens: torch.Tensor | None = None
    _id_guidance: float = 1.0

    @contextlib.contextmanager
    def identity(self, tokens: torch.Tensor, guidance_scale: float = 1.0) -> Iterator[None]:
        self._id_tokens, self._id_guidance = tokens, float(guidance_scale)
        try:
            yield
        finally:
            self._id_tokens = None

    def forward(self, hidden_states, controlnet_cond, *args, encoder_hidden_states=None, txt_ids=None, guidance=None, **kwargs):
        if self._id_tokens is None:
            raise StyleIDError("InfuseNet was called without identity tokens; run it through InfiniteYouPipeline")
        tokens = self._id_tokens.to(hidden_states.device, hidden_states.dtype)
        tokens = tokens.expand(hidden_states.shape[0], -1, -1) if tokens.shape[0] == 1 else tokens
        if guidance is not None:
            guidance = torch.full_like(guidance, self._id_guidance)
        return super().forward(hidden_states, controlnet_cond, *args, encoder_hidden_states=tokens,
                               txt_ids=tokens.new_zeros(tokens.shape[1], 3), guidance=guidance, **kwargs)




class InfiniteYouPipeline(FluxControlNetPipeline):
    """`FluxControlNetPipeline` + InfiniteYou identity conditioning + optional StyleID guidance.

    >>> pipe = InfiniteYouPipeline.from_pretrained(flux_dev, controlnet=InfuseNet.from_pretrained(dir / "InfuseNetModel"))
    >>> pipe.load_image_proj(dir / "image_proj_model.bin")
    >>> pipe(prompt, id_embeds=arcface_embedding, strength_level=3, identity_guidance=callback)
    """

    image_proj_model: nn.Module | None = None

    def load_image_proj(self, path_or_state_dict: str | os.PathLike | dict) -> None:
        """Load `image_proj_model.bin` ({"image_proj": Resampler weights})."""
        state = load_state_dict_file(path_or_state_dict, "InfiniteYou image_proj_model.bin")
        if "image_proj" not in state:
            raise StyleIDError("image_proj_model.bin: expected the key 'image_proj' (the InfiniteYou layout)")
        resampler = resampler_from_upstream(state["image_proj"], "image_proj_model.bin image_proj")
        width = self.controlnet.config.joint_attention_dim
        if resampler.proj_out.out_features != width:
            raise StyleIDError(f"image_proj_model.bin makes {resampler.proj_out.out_features}-d tokens but InfuseNet expects "
                               f"{width}-d; use the files of one InfiniteYou release together")
        self.image_proj_model = resampler.to(self.transformer.device, self.transformer.dtype)

    def encode_identity(self, id_embeds, num_images: int = 1) -> torch.Tensor:
        """ArcFace embedding(s) [512] / [B, 512] → identity tokens [B·num_images, 8, D]."""
        proj = self.image_proj_model.to(self._execution_device)
        emb = torch.as_tensor(np.asarray(id_embeds) if not torch.is_tensor(id_embeds) else id_embeds)
        emb = emb.reshape(-1, 1, proj.proj_in.in_features).to(self._execution_device, proj.proj_in.weight.dtype)
        return proj(emb).repeat_interleave(num_images, dim=0)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        id_embeds: torch.Tensor | np.ndarray | None = None,
        control_image: PIL.Image.Image | None = None,
        *,
        strength_level: int | None = None,
        infusenet_conditioning_scale: float | None = None,
        infusenet_guidance_scale: float = 1.0,
        guidance_scale: float | None = None,
        num_inference_steps: int | None = None,
        height: int | None = None,
        width: int | None = None,
        identity_guidance: IdentityGuidanceCallback | None = None,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
        num_images_per_prompt: int = 1,
        **kwargs: Any,
    ):
        """Generate. `id_embeds`: the ArcFace embedding of the face; `control_image`: `draw_kps` of a pose (or
        None: black, identity only). `strength_level` 1..7 fills the paper's settings (explicit arguments win);
        `identity_guidance`: an `IdentityGuidanceCallback` or None. Other keyword arguments go to the parent."""
        if self.image_proj_model is None:
            raise StyleIDError("no InfiniteYou Resampler loaded; call pipe.load_image_proj('image_proj_model.bin') first")
        if not isinstance(self.controlnet, InfuseNet):
            raise StyleIDError("controlnet must be an InfuseNet; load it with InfuseNet.from_pretrained('.../InfuseNetModel')")
        if id_embeds is None:
            raise StyleIDError("InfiniteYou needs id_embeds (the ArcFace embedding of the face)")
        explicit = dict(infusenet_conditioning_scale=infusenet_conditioning_scale, guidance_scale=guidance_scale,
                        num_inference_steps=num_inference_steps, height=height, width=width)
        cfg = {**DEFAULTS, **(infiniteyou_preset(strength_level) if strength_level is not None else {}),
               **{k: v for k, v in explicit.items() if v is not None}}
        if control_image is None:
            control_image = PIL.Image.new("RGB", (cfg["width"], cfg["height"]))
        id_tokens = self.encode_identity(id_embeds, num_images_per_prompt)

        guidance_kwargs = prepare_guidance_kwargs(self, identity_guidance, callback_on_step_end, callback_on_step_end_tensor_inputs)
        with self.controlnet.identity(id_tokens, infusenet_guidance_scale):
            return super().__call__(
                prompt=prompt,
                control_image=control_image,
                controlnet_conditioning_scale=cfg["infusenet_conditioning_scale"],
                guidance_scale=cfg["guidance_scale"],
                num_inference_steps=cfg["num_inference_steps"],
                height=cfg["height"],
                width=cfg["width"],
                num_images_per_prompt=num_images_per_prompt,
                **guidance_kwargs,
                **kwargs,
            )


class InfiniteYouStylizer:
    """Face + prompt → stylised face with InfiniteYou (facexlib ArcFace embedding; no pose image by default)."""

    def __init__(self, pipe: InfiniteYouPipeline, face_embedder: FaceEmbedder, size: int = 512, call_defaults: dict | None = None):
        self.pipe = pipe
        self.face_embedder = face_embedder
        self.size = size
        self.call_defaults = dict(call_defaults or {})

    @classmethod
    def tiny(cls, device: str | torch.device = "cpu") -> "InfiniteYouStylizer":
        """Random tiny FLUX + InfuseNet + Resampler + face model: offline, seconds on CPU, 32-px images."""
        from styleid_guidance.tiny.controlnet import tiny_flux_controlnet_components, tiny_infiniteyou_state_dict
        from styleid_guidance.tiny.face_embedder import TinyFaceEmbedder

        pipe = InfiniteYouPipeline(**tiny_flux_controlnet_components())
        pipe.load_image_proj(tiny_infiniteyou_state_dict(pipe.controlnet.config.joint_attention_dim))
        pipe.set_progress_bar_config(disable=True)
        return cls(pipe.to(device), TinyFaceEmbedder(detector=OFFLINE_DETECTOR), size=32, call_defaults={"max_sequence_length": 64})

    @classmethod
    def from_pretrained(
        cls,
        base_model: str = _MODELS["base_model"],
        infiniteyou: str = _MODELS["infiniteyou"],
        model_version: str = _MODELS["model_version"],
        infu_flux_version: str = _MODELS["infu_flux_version"],
        arcface: str | None = None,
        detector: str | None = None,
        model_rootpath: str | None = None,
        insightface_root: str | None = None,
        device: str | torch.device | None = None,
        torch_dtype: torch.dtype = torch.bfloat16,
        cpu_offload: bool = False,
        quantize_8bit: bool = False,
    ) -> "InfiniteYouStylizer":
        """`infiniteyou`: the ByteDance/InfiniteYou repo (Hub id or local copy) or directly a folder holding
        `InfuseNetModel/` + `image_proj_model.bin`; `model_version`: aes_stage2 (paper) or sim_stage1;
        `arcface`: facexlib's recognition_arcface_ir_se50.pth (default: facexlib's download location).
        Faces are detected as upstream (insightface antelopev2 at 640 → 320 → 160: the copy in the InfiniteYou
        repo's supports/insightface, else under `insightface_root/models/`) unless `detector` ("retinaface" /
        "mtcnn") is given. `cpu_offload` / `quantize_8bit` cut peak GPU memory from ~43 GB to ~30 / ~24 / ~16 GB (both)."""
        from styleid_guidance.hub.resolve import resolve_model_dir
        from styleid_guidance.faces.insightface_app import PACKS

        from .face_embeddings import ArcFaceEmbedder

        device = resolve_device(device)
        sub = f"infu_flux_{infu_flux_version}/{model_version}"
        if Path(infiniteyou).expanduser().is_dir():
            root = Path(infiniteyou).expanduser()
        else:
            patterns = (f"{sub}/InfuseNetModel/*", f"{sub}/image_proj_model.bin")
            if detector is None and insightface_root is None:  # upstream's detector, from the same repo
                patterns += (f"{INSIGHTFACE_SUBFOLDER}/models/antelopev2/{PACKS['antelopev2'][0]}",)
            root = resolve_model_dir(infiniteyou, kind="InfiniteYou", allow_patterns=patterns)
        folder = root if (root / "InfuseNetModel").is_dir() else root / sub
        if not (folder / "InfuseNetModel" / "config.json").is_file() or not (folder / "image_proj_model.bin").is_file():
            raise StyleIDError(f"{folder}: expected InfuseNetModel/ and image_proj_model.bin inside (the ByteDance/InfiniteYou layout)")
        if insightface_root is None and (root / INSIGHTFACE_SUBFOLDER / "models" / "antelopev2").is_dir():
            insightface_root = str(root / INSIGHTFACE_SUBFOLDER)
        face_embedder = ArcFaceEmbedder.from_pretrained(arcface, model_rootpath=model_rootpath, device=device, detector=detector,
                                                        insightface_root=insightface_root)
        infusenet = load_or_explain(lambda: InfuseNet.from_pretrained(folder / "InfuseNetModel", torch_dtype=torch_dtype),
                                    "InfuseNet", folder / "InfuseNetModel", "infiniteyou")
        pipe = load_or_explain(lambda: InfiniteYouPipeline.from_pretrained(base_model, controlnet=infusenet, torch_dtype=torch_dtype),
                               "FLUX base model", base_model, "base_model")
        pipe.load_image_proj(folder / "image_proj_model.bin")
        if quantize_8bit:
            quantize_flux_8bit(pipe)
        if cpu_offload:
            pipe.enable_model_cpu_offload(device=device)
        else:
            pipe.to(device)
        return cls(pipe, face_embedder)

    def call_settings(self, strength_level: int, face: ImageInput | None = None) -> dict[str, Any]:
        """The level's preset, the output size (`size`²; it does not follow the photo), then `call_defaults`."""
        return {**infiniteyou_preset(strength_level), "height": self.size, "width": self.size, **self.call_defaults}

    def __call__(self, face: ImageInput, prompt: str, strength_level: int = 4,
                 identity_guidance: IdentityGuidanceCallback | None = None, seed: int = 0, **overrides: Any) -> PIL.Image.Image:
        """`overrides` go to the pipeline; `pose_image=` draws its face keypoints as InfuseNet's control image,
        as upstream: the pose photo framed by `resize_and_pad` (white, centred), its largest face, `draw_kps`."""
        width, height = overrides.pop("width", self.size), overrides.pop("height", self.size)
        pose = overrides.pop("pose_image", None)
        info = self.face_embedder(load_image(face), name="face image")
        control = None
        if pose is not None:
            framed = resize_and_pad(load_image(pose), (width, height))
            landmarks, _ = self.face_embedder.detect(framed, name="pose_image")
            control = draw_kps((width, height), landmarks)
        generator = torch.Generator("cpu").manual_seed(seed)
        result = self.pipe(prompt, id_embeds=info.embedding, control_image=control, strength_level=strength_level,
                           identity_guidance=identity_guidance, generator=generator, height=height, width=width,
                           **{**self.call_defaults, **overrides})
        return result.images[0]
