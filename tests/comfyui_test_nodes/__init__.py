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


class StyleIDTestPackageFile:
    """Reports which styleid_guidance ComfyUI's Python imported (the installed package's `__file__`)."""

    CATEGORY = "StyleID/testing"
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "report"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    def report(self):
        import styleid_guidance

        return {"ui": {"file": [styleid_guidance.__file__]}}


class StyleIDTestSaveExact:
    """Saves an IMAGE's pixels losslessly as PNGs in the output folder: rounded, where SaveImage truncates
    255 * x and so can turn a decoded 8-bit value k into k - 1."""

    CATEGORY = "StyleID/testing"
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "save"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",), "filename_prefix": ("STRING", {"default": "exact"})}}

    def save(self, images, filename_prefix):
        import folder_paths
        import numpy as np
        from PIL import Image

        out = Path(folder_paths.get_output_directory())
        out.mkdir(parents=True, exist_ok=True)
        names = []
        for i, image in enumerate(images):
            name = f"{filename_prefix}_{i}.png"
            pixels = np.clip(np.rint(image.cpu().numpy() * 255.0), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(out / name)
            names.append(name)
        return {"ui": {"files": names}}


NODE_CLASS_MAPPINGS = {"StyleIDTestSaveExact": StyleIDTestSaveExact, "StyleIDTestTinyModels": StyleIDTestTinyModels, "StyleIDTestRank3Image": StyleIDTestRank3Image,
                       "StyleIDTestPackageFile": StyleIDTestPackageFile}
