"""The paper's seven identity-strength levels per stylisation method (SPEC.md §3).

Level l is the stylisation strength s = l/7: l = 1 keeps the identity conditioning strongest and the
prompt weakest (CFG = 1), l = 7 is the most stylised (weakest identity conditioning, strongest prompt).
The level moves both knobs together, as in the paper's schedules.
"""
from __future__ import annotations

from styleid_guidance.errors import StyleIDError

STRENGTH_LEVELS = range(1, 8)

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
