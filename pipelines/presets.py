"""The paper's seven identity-strength levels per stylisation method (SPEC.md §3).

Level l is the stylisation strength s = l/7: l = 1 keeps the identity conditioning strongest and the
prompt weakest (CFG = 1), l = 7 is the most stylised (weakest identity conditioning, strongest prompt).
The level moves both knobs together, as in the paper's schedules. FLUX.1 Kontext has no identity scale: its
level moves the distilled guidance and the identity clause of the instruction (`kontext_preset`).
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
