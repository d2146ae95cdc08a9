"""FLUX.1 Kontext [dev] on diffusers' own, unmodified `FluxKontextPipeline`, with StyleID identity guidance.

Kontext stylises by instruction ("Turn this photo into a Pixar character"): the reference photo *is* the
input image, encoded by the FLUX VAE and appended to the noisy tokens in every transformer call. There is no
identity adapter and no third-party code; guidance is `IdentityGuidanceCallback` through `callback_on_step_end`,
which acts on the generated tokens only (`styleid_guidance.integrations.reference_tokens`).

The paper's seven strength levels (`presets.kontext_preset`, `presets.kontext_instruction`). Kontext exposes
no identity-conditioning scale — the photo is always attended in full — so a level moves the two knobs it has,
in the paper's direction (l = 1: identity strongest, prompt weakest; l = 7: most stylised):
- the distilled guidance `guidance_scale` = 1 + 0.5·(l − 1), 1.0 … 4.0 (level 4 = diffusers' default 2.5).
  It is how strongly the instruction is followed, the counterpart of the other methods' CFG = l; Kontext [dev]
  is guidance-distilled, so it has no real CFG at the default (true CFG would double the cost per step).
- the instruction's identity clause: "..., keeping the person's face, identity, expression and pose exactly the
  same" at l = 1, shorter up to l = 4, none from l = 5. This stands in for the other methods' identity-adapter
  scale: with Kontext the instruction is what tells the model how much of the face to keep.
Steps stay at Kontext's 28 (the other methods also keep their steps fixed across levels). `true_cfg_scale` and
`negative_prompt` can still be passed as overrides (x0 guidance handles them; the x_t mode refuses them).

The output has the photo's aspect ratio at `size`² pixels (1024² by default, Kontext's training area; a
multiple of 16 per side). Kontext keeps the photo's layout, so the face stays where it was and an identity loss
built from the same photo with `crop="face"` finds it through the photo's own landmarks.

Memory: FLUX.1 Kontext [dev] has FLUX.1-dev's architecture (a 12B transformer and T5-XXL, ~33 GB of bf16 weights
in all) and twice its image sequence (the photo's tokens). `cpu_offload=True` (diffusers model offload) keeps one
model on the GPU at a time; `quantize_8bit=True` (optimum-quanto int8 on the transformer and T5) halves those two.
No Kontext peak was measured here (no GPU was lent); InfiniteYou's FLUX.1-dev figures are the nearest guide.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import PIL.Image
import torch
from diffusers import FluxKontextPipeline

from styleid_guidance.devices import resolve_device
from styleid_guidance.errors import StyleIDError
from styleid_guidance.files.images import ImageInput, load_image
from styleid_guidance.integrations.composition import prepare_guidance_kwargs
from styleid_guidance.options import OFFLINE_DETECTOR, detector_for

from .adapter_files import load_or_explain
from .presets import DEFAULT_MODELS, kontext_instruction, kontext_preset
from .quantize import quantize_flux_8bit

if TYPE_CHECKING:
    from styleid_guidance.integrations.callback import IdentityGuidanceCallback

    from .face_embeddings import FaceEmbedder

KONTEXT_MODEL = DEFAULT_MODELS["kontext"]["base_model"]
DEFAULT_SIZE = 1024  # Kontext's own max_area is 1024²


def check_kontext_pipeline(pipe: Any) -> FluxKontextPipeline:
    """`pipe` itself, if it is a diffusers `FluxKontextPipeline`; else one line saying what is expected."""
    if not isinstance(pipe, FluxKontextPipeline):
        raise StyleIDError(f"Kontext stylisation needs a diffusers FluxKontextPipeline (FLUX.1 Kontext [dev], {KONTEXT_MODEL}), "
                           f"got {type(pipe).__name__}: a text-to-image FLUX pipeline has no input image to edit")
    return pipe


def output_size(image_size: tuple[int, int], size: int, multiple: int) -> tuple[int, int]:
    """(width, height) with the photo's aspect ratio and about `size`² pixels, each a multiple of `multiple`
    (the pipeline's VAE factor × 2, as it would round them itself, with a warning)."""
    w, h = image_size
    aspect = w / h
    width = max(multiple, round((size * size * aspect) ** 0.5) // multiple * multiple)
    height = max(multiple, round((size * size / aspect) ** 0.5) // multiple * multiple)
    return width, height




class KontextStylizer:
    """Face photo + style prompt → the photo restyled by FLUX.1 Kontext, optionally identity-guided.

    `face_embedder` is the face front end the other stylizers use; Kontext needs no face embedding, so only its
    detection runs: a photo without a face is refused (`NoFaceError`) before any sampling."""

    def __init__(self, pipe: FluxKontextPipeline, face_embedder: FaceEmbedder, size: int = DEFAULT_SIZE,
                 call_defaults: dict | None = None):
        self.pipe = check_kontext_pipeline(pipe)
        self.face_embedder = face_embedder
        self.size = int(size)
        self.call_defaults = dict(call_defaults or {})

    @classmethod
    def tiny(cls, device: str | torch.device = "cpu") -> KontextStylizer:
        """Random tiny FLUX Kontext + the tiny face model: offline, seconds on CPU, 32-px images."""
        from styleid_guidance.tiny.face_embedder import TinyFaceEmbedder
        from styleid_guidance.tiny.kontext import SIZE, TINY_CALL, tiny_kontext_pipeline

        defaults = {k: v for k, v in TINY_CALL.items() if k != "max_area"}  # max_area follows the output size
        return cls(tiny_kontext_pipeline(device=device), TinyFaceEmbedder(detector=OFFLINE_DETECTOR), size=SIZE, call_defaults=defaults)

    @classmethod
    def from_pretrained(
        cls,
        base_model: str = KONTEXT_MODEL,
        detector: str | None = None,
        model_rootpath: str | None = None,
        face_pack: str | None = None,
        insightface_root: str | None = None,
        device: str | torch.device | None = None,
        torch_dtype: torch.dtype = torch.bfloat16,
        cpu_offload: bool = False,
        quantize_8bit: bool = False,
        size: int = DEFAULT_SIZE,
    ) -> KontextStylizer:
        """`base_model`: a FLUX.1 Kontext [dev] folder (diffusers layout) or Hub id (gated: accept the licence and
        `hf auth login`). Faces are found with `detector` ("retinaface", the default, or "mtcnn"), or with an
        insightface pack (`face_pack="antelopev2"` under `insightface_root/models/`) as InstantID / InfiniteYou do.
        `torch_dtype` bf16 by default (fp32 doubles the ~24 GB of weights); `cpu_offload` / `quantize_8bit` as in
        the module docstring. Never `trust_remote_code`."""
        from .face_embeddings import FaceEmbedder

        device = resolve_device(device)
        face_app = None
        if face_pack is not None and detector is None:
            from styleid_guidance.faces.insightface_app import FaceApp

            face_app = FaceApp(face_pack, insightface_root, device=device, modules=("detection",))
        faces = FaceEmbedder(detector=detector_for(detector), model_rootpath=model_rootpath, face_app=face_app,
                             retry=face_app is not None)
        # FLUX.1-dev and Kontext [dev] share every component class: loading the wrong one would not fail, it would
        # silently ignore the photo. The folder's model_index.json says which pipeline it was saved for.
        index = load_or_explain(lambda: FluxKontextPipeline.load_config(base_model), "FLUX.1 Kontext model", base_model, "base_model")
        saved_as = index.get("_class_name")
        if saved_as != FluxKontextPipeline.__name__:
            raise StyleIDError(f"base_model {str(base_model)!r} holds a {saved_as} (model_index.json), not a FluxKontextPipeline: "
                               f"pass FLUX.1 Kontext [dev] weights ({KONTEXT_MODEL} or a copy of it)")
        pipe = load_or_explain(lambda: FluxKontextPipeline.from_pretrained(base_model, torch_dtype=torch_dtype),
                               "FLUX.1 Kontext model", base_model, "base_model")
        if quantize_8bit:
            quantize_flux_8bit(pipe)
        if cpu_offload:
            pipe.enable_model_cpu_offload(device=device)
        else:
            pipe.to(device)
        return cls(pipe, faces, size=size)

    def reference(self, face: ImageInput) -> PIL.Image.Image:
        """The photo Kontext edits (RGB, upright), after the face front end has found a face on it."""
        image = load_image(face)
        self.face_embedder.detect(image, name="face image")
        return image

    def call_settings(self, strength_level: int, face: ImageInput | None = None) -> dict[str, Any]:
        """The level's preset, then `call_defaults`; with `face`, also the output height/width (the photo's aspect
        at `size`² px). The instruction is `presets.kontext_instruction(prompt, level)`, derived from the prompt."""
        size = {}
        if face is not None:
            width, height = output_size(load_image(face).size, self.size, self.pipe.vae_scale_factor * 2)
            size = {"height": height, "width": width}
        return {**kontext_preset(strength_level), **size, **self.call_defaults}

    def call_kwargs(self, image: PIL.Image.Image, prompt: str, strength_level: int = 4, **overrides: Any) -> dict[str, Any]:
        """Everything one pipeline call gets besides the image, the guidance and the generator: the level's
        preset and instruction, the output size, the stylizer's defaults, then `overrides` (which win)."""
        multiple = self.pipe.vae_scale_factor * 2
        width, height = output_size(image.size, self.size, multiple)
        width, height = overrides.pop("width", width), overrides.pop("height", height)
        if width % multiple or height % multiple:
            raise StyleIDError(f"width and height must be multiples of {multiple} for this Kontext model, got {width}x{height}")
        return {"prompt": kontext_instruction(prompt, strength_level), **kontext_preset(strength_level),
                "height": height, "width": width, "max_area": width * height, **self.call_defaults, **overrides}

    def __call__(self, face: ImageInput, prompt: str, strength_level: int = 4,
                 identity_guidance: IdentityGuidanceCallback | None = None, seed: int = 0, **overrides: Any) -> PIL.Image.Image:
        """`prompt`: one of `presets.STYLE_PROMPTS` (its Kontext instruction is used) or any instruction;
        `overrides` go to `FluxKontextPipeline.__call__` (e.g. num_inference_steps, guidance_scale, true_cfg_scale)."""
        image = self.reference(face)
        kwargs = self.call_kwargs(image, prompt, strength_level, **overrides)
        # the photo at the output size: with `_auto_resize` off (tiny) the pipeline would encode it as it is, and
        # with it on, it picks the preferred Kontext resolution nearest this aspect ratio anyway
        image = image.resize((kwargs["width"], kwargs["height"]), PIL.Image.LANCZOS)
        user_cb = kwargs.pop("callback_on_step_end", None)
        user_inputs = kwargs.pop("callback_on_step_end_tensor_inputs", None)
        guidance = prepare_guidance_kwargs(self.pipe, identity_guidance, user_cb, user_inputs)
        generator = torch.Generator("cpu").manual_seed(seed)
        return self.pipe(image=image, generator=generator, **kwargs, **guidance).images[0]
