"""A group image with every face boxed and named: the assigned person (green, with the similarity), or "unknown"
(red), and "swap?" where the face looks more like someone else. Shared by the ComfyUI nodes and the demo."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from ..faces.detection import Face
from .assign import PeopleResult


def annotate_faces(image: Image.Image, faces: Sequence[Face], result: PeopleResult) -> Image.Image:
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    width = max(2, min(out.size) // 200)
    swapped = {s.face: s.closer for s in result.swaps}
    for f, face in enumerate(faces):
        p = result.face_person[f]
        colour = (40, 200, 70) if p is not None and f not in swapped else (220, 50, 50)
        label = "unknown" if p is None else f"{result.names[p]} {float(result.similarity[f, p]):.2f}"
        if f in swapped:
            label += f" swap? ({swapped[f]})"
        x1, y1, x2, y2 = (float(v) for v in np.asarray(face.box))
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=width)
        top = max(0.0, y1 - 14)
        draw.rectangle([x1, top, x1 + 7 * len(label) + 6, top + 14], fill=(0, 0, 0))
        draw.text((x1 + 3, top + 1), label, fill=colour)
    return out
