"""StyleIDPickFace: one person's face out of a group image, as a crop and a MASK (ComfyUI V3 node)."""
from __future__ import annotations

import json
import math

import torch
import torch.nn.functional as F
from comfy_api.latest import io

from styleid_guidance.options import DEFAULT_THRESHOLD

from . import models
from .images import bchw_to_image, check_finite, image_to_bchw
from .nodes_scoring import CATEGORY, StyleIDModelType
from .people import embed_references, pick_region


class StyleIDPickFace(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="StyleIDPickFace",
            display_name="StyleID Pick Face",
            category=CATEGORY,
            description="Pick one person's face in a group image — the face most like the reference photo (StyleID "
                        "similarity), or the index-th face from the left — as a square crop and a MASK of that crop "
                        "over the whole image, for inpainting and face-detailer workflows. An image where the person "
                        "is not found gives an empty mask, its centre as the crop, and similarity -1.",
            inputs=[
                StyleIDModelType.Input("styleid_model"),
                io.Image.Input("image", tooltip="group image(s)"),
                io.Image.Input("reference", optional=True, tooltip="a photo of the person to pick (one face)"),
                io.Int.Input("index", default=0, min=0, max=255, optional=True,
                             tooltip="without a reference: the face to pick, counted from the left (0 = leftmost)"),
                io.Float.Input("threshold", default=DEFAULT_THRESHOLD, min=-1.0, max=1.0, step=0.01, optional=True,
                               tooltip="with a reference: the best face must reach this similarity"),
                io.Int.Input("crop_size", default=512, min=64, max=4096, step=8, optional=True),
            ],
            outputs=[
                io.Image.Output("face", display_name="face"),
                io.Mask.Output("mask", display_name="mask", tooltip="1 over the picked face's crop box"),
                io.Float.Output("similarity", display_name="similarity", is_output_list=True,
                                tooltip="to the reference; -1 where not found or without a reference"),
                io.String.Output("boxes", display_name="boxes", tooltip="JSON: each image's crop box [x1, y1, x2, y2] or null"),
            ],
        )

    @classmethod
    def execute(cls, styleid_model: models.StyleIDModel, image: torch.Tensor, reference: torch.Tensor | None = None,
                index: int = 0, threshold: float = DEFAULT_THRESHOLD, crop_size: int = 512) -> io.NodeOutput:
        threshold = check_finite(threshold, "threshold")
        x = image_to_bchw(image, "image")
        # the person's embedding once for the whole batch (and its one-face check)
        ref = (embed_references(styleid_model, [image_to_bchw(reference, "reference")[:1]], ["the reference"])[0]
               if reference is not None else None)
        crops, masks, sims, boxes = [], [], [], []
        for img in x:
            box, _, sim = pick_region(styleid_model, img, ref, int(index), threshold)
            h, w = img.shape[-2:]
            mask = torch.zeros(h, w)
            if box is None:  # not found: the centre square, an empty mask
                side = min(h, w)
                x1, y1 = (w - side) // 2, (h - side) // 2
                crop = img[:, y1:y1 + side, x1:x1 + side]
                sims.append(-1.0)
                boxes.append(None)
            else:
                x1, y1, x2, y2 = box
                crop = img[:, y1:y2, x1:x2]
                mask[y1:y2, x1:x2] = 1.0
                sims.append(sim if math.isfinite(sim) else -1.0)
                boxes.append([x1, y1, x2, y2])
            crops.append(F.interpolate(crop[None], size=(int(crop_size),) * 2, mode="bilinear", align_corners=False,
                                       antialias=True)[0])
            masks.append(mask)
        ui = {"similarity": sims, "boxes": boxes}
        return io.NodeOutput(bchw_to_image(torch.stack(crops)), torch.stack(masks), sims, json.dumps(boxes), ui=ui)
