"""The paper's seven identity-strength levels per stylisation method (StyleID, Yun et al., SIGGRAPH 2026).

Level l is the stylisation strength s = l/7: l = 1 keeps the identity conditioning strongest and the
prompt weakest (CFG = 1), l = 7 is the most stylised (weakest identity conditioning, strongest prompt).
The level moves both knobs together, as in the paper's schedules. FLUX.1 Kontext has no identity scale: its
level moves the distilled guidance and the identity clause of the instruction (`kontext_preset`). Wan 2.x
image-to-video (a video stylizer) likewise: its CFG and how far its prompt turns the person into the style
(`wan_video_preset`, `video_prompt`).
`DEFAULT_MODELS`: the weights each built-in stylizer loads unless told otherwise. `sd15_scheduler` / `ddim_like`:
the paper's sampler (DDIM, eta 0, no clipping), which identity guidance follows exactly
(`styleid_guidance.integrations.x0_estimate`).
"""
from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from styleid_guidance.errors import StyleIDError

if TYPE_CHECKING:
    from diffusers import DDIMScheduler

STRENGTH_LEVELS = range(1, 8)

# The weights each built-in stylizer loads by default, keyed by the from_pretrained argument that takes them: the
# paper's set-ups (and Kontext's). Declared once: `STYLIZERS` registers them, the classes default to them, and
# `generate` records them with every image (so changing one stops older data folders from resuming).
DEFAULT_MODELS = MappingProxyType({
    "ip_adapter": MappingProxyType({
        "base_model": "SG161222/Realistic_Vision_V4.0_noVAE", "ip_adapter": "h94/IP-Adapter-FaceID",
        "weight_name": "ip-adapter-faceid-plusv2_sd15.bin", "image_encoder": "laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
        "vae": "stabilityai/sd-vae-ft-mse", "face_model": "buffalo_l"}),
    "instantid": MappingProxyType({"base_model": "wangqixun/YamerMIX_v8", "instantid": "InstantX/InstantID",
                                   "face_model": "antelopev2"}),
    "infiniteyou": MappingProxyType({"base_model": "black-forest-labs/FLUX.1-dev", "infiniteyou": "ByteDance/InfiniteYou",
                                     "model_version": "aes_stage2", "infu_flux_version": "v1.0"}),
    "kontext": MappingProxyType({"base_model": "black-forest-labs/FLUX.1-Kontext-dev"}),
    "wan_video": MappingProxyType({"base_model": "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers"}),
})

STYLE_PROMPTS: dict[str, str] = {
    "disney": "portrait of a Disney character",
    "line": "Line-art portrait, black and white",
    "orc": "Portrait of green Orc",
    "anime": "Portrait of 2D Anime character",
    "caricature": "Caricature",
    "pixar": "Portrait of a Pixar character",
    "pop-art": "Portrait in pop-art style",
    "ghibli": "portrait of a character in studio Ghibli style",
    "watercolor": "Portrait in soft watercolor painting style",
    "cyberpunk": "Portrait in neon-lit cyberpunk futuristic style",
}

IP_ADAPTER_NEGATIVE = "lowres, worst quality, low quality"
INSTANTID_NEGATIVE = "ugly, deformed, noisy, blurry, low contrast, realism, photorealistic"


def _check(level: int) -> int:
    if isinstance(level, bool) or int(level) != level or level not in STRENGTH_LEVELS:
        raise StyleIDError(f"strength_level must be an integer from 1 to 7, got {level!r}")
    return int(level)


def ip_adapter_preset(level: int) -> dict:
    """IP-Adapter FaceID Plus (SD1.5): adapter scale 0.01·2^(8−l), CFG = l, DDIM 25 steps at 512²."""
    level = _check(level)
    return {
        "ip_adapter_scale": 0.01 * 2 ** (8 - level),
        "guidance_scale": float(level),
        "negative_prompt": IP_ADAPTER_NEGATIVE,
        "num_inference_steps": 25,
        "height": 512,
        "width": 512,
    }


def instantid_preset(level: int) -> dict:
    """InstantID (SDXL): ip-adapter scale 0.02·1.8^(8−l), controlnet scale 1 − l/8, CFG = l, 25 steps."""
    level = _check(level)
    return {
        "ip_adapter_scale": 0.02 * 1.8 ** (8 - level),
        "controlnet_conditioning_scale": 1.0 - level / 8,
        "guidance_scale": float(level),
        "negative_prompt": INSTANTID_NEGATIVE,
        "num_inference_steps": 25,
    }


def infiniteyou_preset(level: int) -> dict:
    """InfiniteYou (FLUX.1-dev): InfuseNet scale 1.1 − 0.15·l, guidance l + 0.2, 20 steps at 512²."""
    level = _check(level)
    return {
        "infusenet_conditioning_scale": 1.1 - 0.15 * level,
        "guidance_scale": level + 0.2,
        "num_inference_steps": 20,
        "height": 512,
        "width": 512,
    }


# FLUX.1 Kontext edits the photo by instruction: the style prompts as instructions (same ten styles).
KONTEXT_INSTRUCTIONS: dict[str, str] = {
    "disney": "Turn this photo into a portrait of a Disney character",
    "line": "Turn this photo into a black and white line-art portrait",
    "orc": "Turn this person into a green Orc",
    "anime": "Turn this photo into a 2D anime character portrait",
    "caricature": "Turn this photo into a caricature",
    "pixar": "Turn this photo into a portrait of a Pixar character",
    "pop-art": "Turn this photo into a pop-art portrait",
    "ghibli": "Turn this photo into a studio Ghibli style character portrait",
    "watercolor": "Turn this photo into a soft watercolor painting",
    "cyberpunk": "Turn this photo into a neon-lit cyberpunk futuristic portrait",
}
# Kontext has no identity-conditioning scale: the photo is always fully attended. What holds the identity is
# the instruction itself, so the levels say less about keeping the face as the stylisation grows.
KONTEXT_KEEP = {
    1: ", keeping the person's face, identity, expression and pose exactly the same",
    2: ", keeping the person's face and identity exactly the same",
    3: ", keeping the person's facial features",
    4: ", keeping the person's identity",
    5: "",
    6: "",
    7: "",
}


def kontext_instruction(prompt: str, level: int) -> str:
    """The Kontext instruction for a style prompt at `level`: one of the ten `STYLE_PROMPTS` becomes its
    instruction (`KONTEXT_INSTRUCTIONS`), any other text is taken as an instruction already; then the level's
    identity clause (`KONTEXT_KEEP`)."""
    level = _check(level)
    by_prompt = {STYLE_PROMPTS[k]: v for k, v in KONTEXT_INSTRUCTIONS.items()}
    text = (prompt or "").strip()
    if not text:
        raise StyleIDError("prompt must be a style prompt or a Kontext instruction, got an empty string")
    base = by_prompt.get(text) or KONTEXT_INSTRUCTIONS.get(text) or text
    return base.rstrip(". ") + KONTEXT_KEEP[level]


def kontext_preset(level: int) -> dict:
    """FLUX.1 Kontext [dev]: distilled guidance 1 + 0.5·(l − 1) (1.0 … 4.0; level 4 = diffusers' default 2.5),
    28 steps (its default), no true CFG; the level's identity clause goes into the instruction
    (`kontext_instruction`). Why these knobs: `pipelines/kontext.py`."""
    level = _check(level)
    return {"guidance_scale": 1.0 + 0.5 * (level - 1), "num_inference_steps": 28}


# Wan 2.x image-to-video starts the clip from the photo itself (its first frame), so the style has to come in over
# the clip: the prompt describes the person turning into the style. Like Kontext's clauses, the level says how far
# and how fast, and how much of the face to keep (l = 1: a touch of the style, face kept exactly; l = 7: at once
# and completely).
VIDEO_CHANGE = {
    1: "The person in the photo keeps their exact face, identity, expression and pose, only blinking and breathing, "
       "with a faint touch of this style",
    2: "The person in the photo slowly takes on a light touch of this style, keeping their face and identity exactly "
       "the same, with a slight natural head movement",
    3: "The person in the photo gradually turns into this style, keeping their facial features, with natural head movement",
    4: "The person in the photo turns into this style, keeping their identity, with natural head movement and expression",
    5: "The person in the photo fully turns into this style, with natural head movement and expression",
    6: "The person in the photo quickly and fully turns into this style, with its exaggerated features and lively motion",
    7: "The person in the photo immediately and completely turns into this style, with its strongest, most exaggerated "
       "look and lively motion",
}
# The negative prompt that the classifier-free guidance pushes away from: what goes wrong in portrait clips.
VIDEO_NEGATIVE = ("static, frozen frame, blurry, low quality, worst quality, jpeg artifacts, deformed face, distorted "
                  "features, extra fingers, flickering, subtitles, watermark")


def video_prompt(prompt: str, level: int) -> str:
    """The Wan image-to-video prompt for a style prompt at `level`: the style prompt (any text), then the
    level's sentence on how the person turns into it (`VIDEO_CHANGE`)."""
    level = _check(level)
    text = (prompt or "").strip()
    if not text:
        raise StyleIDError("prompt must be a style prompt, got an empty string")
    return f"{text.rstrip('. ')}. {VIDEO_CHANGE[level]}."


def wan_video_preset(level: int) -> dict:
    """Wan 2.x image-to-video: CFG 3.5 + 0.5·(l − 1) (3.5 … 6.5; level 4 = Wan's default 5.0) with `VIDEO_NEGATIVE`,
    40 steps (Wan 2.1's own image-to-video default); the level's sentence goes into the prompt (`video_prompt`).
    Why these knobs: `pipelines/wan_video.py`."""
    level = _check(level)
    return {"guidance_scale": 3.5 + 0.5 * (level - 1), "negative_prompt": VIDEO_NEGATIVE, "num_inference_steps": 40}


# -- the paper's sampler (diffusers is imported on use: the registry reads this module and stays light) -------
def sd15_scheduler() -> DDIMScheduler:
    """DDIM as in the paper's IP-Adapter generations (SD1.5 betas, no clipping, eta 0)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                         set_alpha_to_one=False, steps_offset=1)


def ddim_like(scheduler: Any) -> DDIMScheduler:
    """DDIM with another scheduler's betas (e.g. an SDXL checkpoint's), set up as `sd15_scheduler`."""
    from diffusers import DDIMScheduler

    return DDIMScheduler.from_config(scheduler.config, clip_sample=False, set_alpha_to_one=False, steps_offset=1)
