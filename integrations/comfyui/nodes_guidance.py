"""StyleIDGuidance: a ComfyUI V3 node that patches a MODEL with identity guidance (see guidance.py)."""
from __future__ import annotations

from typing import Any

import torch
from comfy_api.latest import io

from styleid_guidance.errors import StyleIDError
from styleid_guidance.options import DEFAULT_PEOPLE_CONTRAST

from . import models
from .guidance import patch_model
from .images import check_finite, reference_photos
from .nodes_scoring import CATEGORY, StyleIDModelType, more_references_input


class StyleIDGuidance(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="StyleIDGuidance",
            display_name="StyleID Identity Guidance",
            category=CATEGORY,
            description="A patched MODEL whose sampling follows the gradient of 1 − cos(StyleID(decode(x0)), reference): "
                        "a post-CFG function, so it composes with IPAdapter / InstantID / PuLID patches and other "
                        "post-CFG patches. scale 0 samples exactly as the unpatched model.",
            inputs=[
                io.Model.Input("model"),
                io.Vae.Input("vae", tooltip="the checkpoint's VAE, or TAESD (Load VAE → taesd, taesdxl or taef1 for FLUX, "
                                            "from models/vae_approx): ~10x cheaper"),
                StyleIDModelType.Input("styleid_model"),
                io.Image.Input("reference", tooltip="one or several photos of the person"),
                io.Float.Input("scale", default=0.05, min=0.0, max=10.0, step=0.005,
                               tooltip="RMS of each x0 correction in latent units (the gradient is normalised per sample)"),
                io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.01),
                io.Float.Input("end_percent", default=0.9, min=0.0, max=1.0, step=0.01),
                io.Int.Input("every_n_steps", default=1, min=1, max=1000),
                io.Int.Input("frames_per_step", default=4, min=1, max=1024, optional=True,
                             tooltip="video models (Wan): latent frames decoded per guided step, spread over the clip "
                                     "and rotating, so every frame is guided within frames ÷ this many steps"),
                io.Mask.Input("regions", optional=True,
                              tooltip="several people: one mask per reference photo (in order, one face per photo), "
                                      "each painting that person's face region; each is pulled toward their own photo"),
                io.Float.Input("contrast", default=DEFAULT_PEOPLE_CONTRAST, min=0.0, max=5.0, step=0.05, optional=True,
                               tooltip="several people: also push each face off the most similar other person's "
                                       "reference, with this weight (against swaps and merges)"),
                *more_references_input(),
            ],
            outputs=[io.Model.Output()],
        )

    @classmethod
    def execute(cls, model: Any, vae: Any, styleid_model: models.StyleIDModel, reference: torch.Tensor, scale: float,
                start_percent: float, end_percent: float, every_n_steps: int, frames_per_step: int = 4,
                regions: torch.Tensor | None = None, contrast: float = DEFAULT_PEOPLE_CONTRAST,
                more_references: dict | None = None) -> io.NodeOutput:
        scale = check_finite(scale, "scale")
        if scale < 0:
            raise StyleIDError(f"scale must be >= 0, got {scale}")
        refs = reference_photos(reference, more_references)
        patched, _ = patch_model(model, vae, styleid_model, refs, scale, check_finite(start_percent, "start_percent"),
                                 check_finite(end_percent, "end_percent"), int(every_n_steps), int(frames_per_step),
                                 regions, check_finite(contrast, "contrast"))
        return io.NodeOutput(patched)
