"""Test-only ComfyUI nodes (linked into the temporary ComfyUI copy by the server tests, never shipped): a tiny
random SD1.5-layout MODEL, a random TAESD VAE and conditioning, so StyleIDGuidance → KSampler runs through the
real engine without any checkpoint file."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for comfyui_support

from comfyui_support import conditioning, tiny_sd15, tiny_taesd  # noqa: E402


class StyleIDTestTinyModels:
    CATEGORY = "StyleID/testing"
    RETURN_TYPES = ("MODEL", "VAE", "CONDITIONING", "CONDITIONING")
    RETURN_NAMES = ("model", "vae", "positive", "negative")
    FUNCTION = "build"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 1000})}}

    def build(self, seed):
        positive, negative = conditioning(seed + 1)
        return tiny_sd15(seed), tiny_taesd(seed), positive, negative


class StyleIDTestRank3Image:
    """Stands in for a faulty third-party node: an IMAGE-typed output of the wrong rank [H,W,C]."""

    CATEGORY = "StyleID/testing"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "build"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    def build(self):
        import torch

        return (torch.rand(32, 32, 3),)


NODE_CLASS_MAPPINGS = {"StyleIDTestTinyModels": StyleIDTestTinyModels, "StyleIDTestRank3Image": StyleIDTestRank3Image}
