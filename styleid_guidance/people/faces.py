"""Every face of a group image, and the loose crop around each that the models embed.

A face's crop is a square around its detected box, `CONTEXT` times the box's longer side, clipped to the image.
Each model then embeds the crop exactly as it embeds any image (detect the largest face, align, encode), so a
person's score in a group image equals `styleid verify` on that crop saved as a PNG.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from ..errors import StyleIDError
from ..faces.detection import Face, detect_faces
from ..files.images import ImageInput, load_image
from ..options import DEFAULT_DETECTOR

CONTEXT = 2.0  # crop side / face box side: room for the loose StyleID framing (hair, chin) around the face
MIN_SCORE = 0.9  # detector confidence for "a face" in a group: below it, patterns in clothes and background count


def detect_all_faces(image: ImageInput, detector: str = DEFAULT_DETECTOR, model_rootpath: str | None = None,
                     device: str | None = None, min_score: float = MIN_SCORE) -> list[Face]:
    """Every face in the image, left to right (then top to bottom): a stable order to report faces in."""
    faces = detect_faces(image, detector=detector, model_rootpath=model_rootpath, device=device, min_score=min_score)
    return sorted(faces, key=lambda f: (round(float(f.box[0] + f.box[2]) / 2), float(f.box[1])))


def crop_box(face_box: Sequence[float], image_size: tuple[int, int], context: float = CONTEXT) -> tuple[int, int, int, int]:
    """The loose square (x1, y1, x2, y2 pixels) around a face box, clipped to the image."""
    x1, y1, x2, y2 = map(float, face_box)
    side = max(x2 - x1, y2 - y1) * context
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    w, h = image_size
    box = (max(0, round(cx - side / 2)), max(0, round(cy - side / 2)), min(w, round(cx + side / 2)), min(h, round(cy + side / 2)))
    if box[2] - box[0] < 2 or box[3] - box[1] < 2:
        raise StyleIDError(f"face box {tuple(face_box)} lies outside the {w}x{h} image")
    return box


def face_crop(image: ImageInput, face: Face | Sequence[float], context: float = CONTEXT) -> Image.Image:
    """The loose crop around one face (a Face or its x1, y1, x2, y2 box), as the models embed it."""
    pil = load_image(image)
    box = face.box if isinstance(face, Face) else face
    return pil.crop(crop_box(box, pil.size, context))


def box_overlap(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection area / the smaller box's area: 0 for boxes apart, 1 when one lies inside the other."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return float(ix * iy / small) if small > 0 else 0.0


def faces_in_boxes(faces: Sequence[Face], boxes: Sequence[Sequence[float]]) -> list[int | None]:
    """For each placed box, the face whose centre lies inside it (the most overlapping one when several do),
    or None: no face where the pipeline put the person. A face is given to one box at most."""
    taken: set[int] = set()
    out: list[int | None] = []
    for box in boxes:
        inside = [k for k, f in enumerate(faces) if k not in taken
                  and box[0] <= (f.box[0] + f.box[2]) / 2 <= box[2] and box[1] <= (f.box[1] + f.box[3]) / 2 <= box[3]]
        best = max(inside, key=lambda k: box_overlap(faces[k].box, box), default=None)
        if best is not None:
            taken.add(best)
        out.append(best)
    return out


def face_boxes(faces: Sequence[Face]) -> list[list[float]]:
    return [[round(float(v), 1) for v in np.asarray(f.box)] for f in faces]
