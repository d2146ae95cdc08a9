"""A video stylizer: a face photo → a stylised animated portrait, with Wan 2.x image-to-video (diffusers' own,
unmodified `WanImageToVideoPipeline`) and StyleID identity guidance.

The photo is the clip's first frame; the style prompt says what the person turns into. Wan 2.1 I2V conditions every
step on the photo's VAE latents (and a CLIP image embedding of it); Wan 2.2 TI2V-5B (`expand_timesteps`) pins the
first latent frame to the photo. Either way the clip starts from the photo, so the style arrives over the clip, and
identity is what drifts as it does: guidance is `IdentityGuidanceCallback` through `callback_on_step_end`, on the
5-D latents, decoding a few latent frames per step through the causal VAE (`styleid_guidance.integrations.video`),
at the Wan family's default scale (`integrations/defaults.py`).

The seven strength levels (`presets.wan_video_preset`, `presets.video_prompt`). Wan has no identity-conditioning
scale (the photo is always the first frame), so, as with FLUX.1 Kontext, a level moves the knobs it has, in the
paper's direction (l = 1: identity strongest, prompt weakest; l = 7: most stylised):
- classifier-free guidance `guidance_scale` = 3.5 + 0.5·(l − 1), 3.5 … 6.5 (level 4 = Wan's default 5.0), against
  a fixed negative prompt (`presets.VIDEO_NEGATIVE`): how strongly the prompt is followed, the counterpart of the
  other methods' CFG = l. The range is centred on Wan's default instead of starting at 1 as theirs do: with the
  photo as the first frame the prompt is the only thing that brings the style, and CFG 1 switches guidance off.
  Untuned: no real-weights run was possible here (no download, no GPU);
- the prompt's sentence on how the person turns into the style (`presets.VIDEO_CHANGE`): "keeps their exact face
  ... with a faint touch of this style" at l = 1, "turns into this style, keeping their identity" at l = 4,
  "immediately and completely turns into this style ..." at l = 7. It stands in for the identity-adapter scale
  (as Kontext's identity clause does): the text is what tells Wan how much of the face to keep.
Steps stay at 40 at every level (Wan 2.1's own image-to-video default; the other methods also keep theirs fixed).

Output: `num_frames` frames (81 = 5 s at Wan 2.1's 16 fps by default; 4k + 1, as the causal VAE needs) with the
photo's aspect ratio at about `size`² pixels, each side a multiple of 16 (32 for TI2V-5B). 632² ≈ 480 × 832, Wan
2.1's 480p area: a 832 × 480 photo gives exactly 832 × 480. `__call__` returns the frames as PIL images.

Default weights: Wan-AI/Wan2.1-I2V-14B-480P-Diffusers (`presets.DEFAULT_MODELS`). Wan 2.2's I2V-A14B and TI2V-5B
(`Wan-AI/Wan2.2-TI2V-5B-Diffusers`; set `size=` 704·1280's ≈ 949 and `fps=24` for its 720p) load the same way. The
scheduler becomes `FlowMatchEulerDiscreteScheduler` at the checkpoint's own flow shift (guidance recovers x0 exactly
from its steps; Wan ships UniPC, which it cannot). Memory: the 14B transformer is ~28 GB of bf16 weights and
UMT5-XXL ~11 GB; `cpu_offload=True` keeps one model on the GPU at a time. Not measured here (no GPU was lent).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import PIL.Image
import PIL.ImageOps
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline

from styleid_guidance.devices import resolve_device
from styleid_guidance.errors import Arg, StyleIDError
from styleid_guidance.files.images import ImageInput, load_image
from styleid_guidance.integrations.composition import prepare_guidance_kwargs
from styleid_guidance.options import OFFLINE_DETECTOR, detector_for

from .adapter_files import load_or_explain
from .kontext import output_size
from .presets import DEFAULT_MODELS, video_prompt, wan_video_preset

if TYPE_CHECKING:
    from styleid_guidance.integrations.callback import IdentityGuidanceCallback

    from .face_embeddings import FaceEmbedder

WAN_I2V_MODEL = DEFAULT_MODELS["wan_video"]["base_model"]
DEFAULT_SIZE = 632  # 632² ≈ 480 · 832, Wan 2.1's 480p area
DEFAULT_FRAMES = 81  # Wan 2.1's clip: 5 s at 16 fps
DEFAULT_FPS = 16
TEMPORAL_RATIO = 4  # Wan 2.1's and 2.2's VAEs: one latent frame per 4 frames, after the first
DEFAULT_SHIFT = 3.0  # Wan 2.1's flow shift for 480p image-to-video, where a checkpoint's scheduler names none


def check_wan_i2v_pipeline(pipe: Any) -> WanImageToVideoPipeline:
    """`pipe` itself, if it is a diffusers `WanImageToVideoPipeline`; else one line saying what is expected."""
    if not isinstance(pipe, WanImageToVideoPipeline):
        raise StyleIDError(f"the Wan video stylizer needs a diffusers WanImageToVideoPipeline ({WAN_I2V_MODEL}), got "
                           f"{type(pipe).__name__}: a text-to-video pipeline has no first frame to start from")
    return pipe


def check_num_frames(frames: Any, ratio: int = TEMPORAL_RATIO) -> int:
    """`frames` if a clip can have that many frames: `ratio`·k + 1 for a causal VAE that compresses time `ratio`x.
    The pipeline would round any other count with only a log line; the clip length is the caller's choice, so say so."""
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1 or (frames - 1) % ratio:
        raise StyleIDError("{frames}: the clip length must be {ratio}k + 1 (1, {one}, {two}, ... {default}) for Wan's causal VAE",
                           param="num_frames", frames=Arg("num_frames", frames), ratio=ratio, one=1 + ratio, two=1 + 2 * ratio,
                           default=DEFAULT_FRAMES)
    return frames


def flow_matching_scheduler(scheduler: Any) -> FlowMatchEulerDiscreteScheduler:
    """Wan's own scheduler (UniPC, flow prediction) as the flow-matching Euler one identity guidance can invert,
    at the same flow shift."""
    if isinstance(scheduler, FlowMatchEulerDiscreteScheduler):
        return scheduler
    cfg = dict(scheduler.config)
    # UniPC / DPM-Solver keep a `flow_shift` (1.0 by default) that means something only with flow prediction
    shift = (cfg.get("flow_shift") if cfg.get("prediction_type") == "flow_prediction" else cfg.get("shift")) or DEFAULT_SHIFT
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=cfg.get("num_train_timesteps", 1000), shift=float(shift))


class WanVideoStylizer:
    """Face photo + style prompt → a stylised clip that starts from the photo (Wan 2.x image-to-video), optionally
    identity-guided. Output kind "video": `__call__` returns a list of PIL frames; `fps` is the rate to play them at.

    `face_embedder` is the face front end the other stylizers use; Wan needs no face embedding, so only its
    detection runs: a photo without a face is refused (`NoFaceError`) before any sampling."""

    def __init__(self, pipe: WanImageToVideoPipeline, face_embedder: FaceEmbedder, size: int = DEFAULT_SIZE,
                 num_frames: int = DEFAULT_FRAMES, fps: int = DEFAULT_FPS, call_defaults: dict | None = None):
        self.pipe = check_wan_i2v_pipeline(pipe)
        self.face_embedder = face_embedder
        self.size = int(size)
        self.fps = int(fps)
        self.call_defaults = {"num_frames": int(num_frames), **(call_defaults or {})}

    @classmethod
    def tiny(cls, device: str | torch.device = "cpu") -> WanVideoStylizer:
        """Random tiny Wan 2.1 image-to-video (with a tokenizer and text encoder, so the style prompt is used) + the
        tiny face model: offline, about a second per clip on a CPU, 5 frames of ~64² px."""
        from styleid_guidance.tiny.face_embedder import TinyFaceEmbedder
        from styleid_guidance.tiny.wan_i2v import FPS, FRAMES, SIZE, tiny_wan_i2v_pipeline

        return cls(tiny_wan_i2v_pipeline(device=device), TinyFaceEmbedder(detector=OFFLINE_DETECTOR), size=SIZE, num_frames=FRAMES, fps=FPS)

    @classmethod
    def from_pretrained(
        cls,
        base_model: str = WAN_I2V_MODEL,
        detector: str | None = None,
        model_rootpath: str | None = None,
        face_pack: str | None = None,
        insightface_root: str | None = None,
        device: str | torch.device | None = None,
        torch_dtype: torch.dtype = torch.bfloat16,
        cpu_offload: bool = False,
        size: int = DEFAULT_SIZE,
        num_frames: int = DEFAULT_FRAMES,
        fps: int = DEFAULT_FPS,
    ) -> WanVideoStylizer:
        """`base_model`: a Wan 2.x image-to-video folder (diffusers layout) or Hub id. Faces are found with `detector`
        ("retinaface", the default, or "mtcnn"), or with an insightface pack (`face_pack="antelopev2"` under
        `insightface_root/models/`). `torch_dtype` bf16 by default; `cpu_offload` as in the module docstring.
        Never `trust_remote_code`."""
        from .face_embeddings import FaceEmbedder

        # A text-to-video Wan folder loads into this class without complaint and fails only inside the first step
        # (its transformer takes no image channels): model_index.json says what it was saved as. Checked first, before
        # anything is loaded.
        index = load_or_explain(lambda: WanImageToVideoPipeline.load_config(base_model), "Wan image-to-video model", base_model, "base_model")
        if index.get("_class_name") != WanImageToVideoPipeline.__name__ and not index.get("expand_timesteps"):
            raise StyleIDError(f"base_model {str(base_model)!r} holds a {index.get('_class_name')} (model_index.json), not an "
                               f"image-to-video Wan model: pass {WAN_I2V_MODEL}, a Wan 2.2 I2V / TI2V model, or a copy of one")
        device = resolve_device(device)
        face_app = None
        if face_pack is not None and detector is None:
            from styleid_guidance.faces.insightface_app import FaceApp

            face_app = FaceApp(face_pack, insightface_root, device=device, modules=("detection",))
        faces = FaceEmbedder(detector=detector_for(detector), model_rootpath=model_rootpath, face_app=face_app,
                             retry=face_app is not None)
        pipe = load_or_explain(lambda: WanImageToVideoPipeline.from_pretrained(base_model, torch_dtype=torch_dtype),
                               "Wan image-to-video model", base_model, "base_model")
        pipe.scheduler = flow_matching_scheduler(pipe.scheduler)
        if cpu_offload:
            pipe.enable_model_cpu_offload(device=device)
        else:
            pipe.to(device)
        return cls(pipe, faces, size=size, num_frames=num_frames, fps=fps)

    @property
    def multiple(self) -> int:
        """What each output side must be a multiple of: the VAE's spatial factor × the transformer's patch."""
        transformer = self.pipe.transformer or self.pipe.transformer_2
        return self.pipe.vae_scale_factor_spatial * transformer.config.patch_size[1]

    def reference(self, face: ImageInput) -> PIL.Image.Image:
        """The photo the clip starts from (RGB, upright), after the face front end has found a face on it."""
        image = load_image(face)
        self.face_embedder.detect(image, name="face image")
        return image

    def call_settings(self, strength_level: int, face: ImageInput | None = None) -> dict[str, Any]:
        """The level's preset, then `call_defaults` (frames; tiny: steps); with `face`, also the output height/width
        (the photo's aspect at `size`² px). The prompt is `presets.video_prompt(prompt, level)`, derived from it."""
        size = {}
        if face is not None:
            width, height = output_size(load_image(face).size, self.size, self.multiple)
            size = {"height": height, "width": width}
        return {**wan_video_preset(strength_level), **size, **self.call_defaults}

    def call_kwargs(self, image: PIL.Image.Image, prompt: str, strength_level: int = 4, **overrides: Any) -> dict[str, Any]:
        """Everything one pipeline call gets besides the first frame, the guidance and the generator: the level's
        preset and prompt, the output size, the stylizer's defaults, then `overrides` (which win)."""
        width, height = output_size(image.size, self.size, self.multiple)
        width, height = overrides.pop("width", width), overrides.pop("height", height)
        if width % self.multiple or height % self.multiple:
            raise StyleIDError(f"width and height must be multiples of {self.multiple} for this Wan model, got {width}x{height}")
        kwargs = {"prompt": video_prompt(prompt, strength_level), **wan_video_preset(strength_level), "height": height,
                  "width": width, **self.call_defaults, **overrides}
        check_num_frames(kwargs["num_frames"], self.pipe.vae_scale_factor_temporal)
        return kwargs

    def __call__(self, face: ImageInput, prompt: str, strength_level: int = 4,
                 identity_guidance: IdentityGuidanceCallback | None = None, seed: int = 0, **overrides: Any) -> list[PIL.Image.Image]:
        """`prompt`: one of `presets.STYLE_PROMPTS` or any style text; `overrides` go to
        `WanImageToVideoPipeline.__call__` (e.g. num_inference_steps, num_frames, guidance_scale, negative_prompt)."""
        image = self.reference(face)
        kwargs = self.call_kwargs(image, prompt, strength_level, **overrides)
        # the photo cropped to the output's aspect, then resized: the pipeline itself would stretch it
        image = PIL.ImageOps.fit(image, (kwargs["width"], kwargs["height"]), PIL.Image.LANCZOS)
        user_cb = kwargs.pop("callback_on_step_end", None)
        user_inputs = kwargs.pop("callback_on_step_end_tensor_inputs", None)
        guidance = prepare_guidance_kwargs(self.pipe, identity_guidance, user_cb, user_inputs)
        generator = torch.Generator("cpu").manual_seed(seed)
        return list(self.pipe(image=image, generator=generator, output_type="pil", **kwargs, **guidance).frames[0])
