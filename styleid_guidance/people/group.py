"""One group image scored in memory with a loaded encoder: for the ComfyUI nodes and the demo, which hold PIL
images and a StyleIDEncoder rather than folders (the same numbers as `styleid score --people` on files)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import StyleIDError
from ..faces.detection import Face
from ..files.images import ImageInput, load_image
from ..options import DEFAULT_DETECTOR, DEFAULT_THRESHOLD
from .assign import DEFAULT_MARGIN, PeopleResult, analyse, assign_people, cosine_matrix
from .embedding import check_one_face
from .faces import box_overlap, detect_all_faces, face_crop, faces_in_boxes


@dataclass
class GroupScore:
    """The image's faces (left to right; `result` indexes them) and the people analysis."""

    faces: list[Face]
    result: PeopleResult


def _photos(value: ImageInput | Sequence[ImageInput]) -> list[ImageInput]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def score_group(image: ImageInput, references: Mapping[str, ImageInput | Sequence[ImageInput]], encoder: Any, *,
                threshold: float = DEFAULT_THRESHOLD, margin: float = DEFAULT_MARGIN, detector: str = DEFAULT_DETECTOR,
                model_rootpath: str | None = None, precision: str | None = "fp32",
                boxes: Mapping[str, Sequence[float]] | None = None) -> GroupScore:
    """Every face of `image` against each person's reference photo(s) ({name: photo or [photos]}, each showing one
    face; several photos → their normalised mean). boxes: {name: (x1, y1, x2, y2)} where the pipeline placed each
    person (match by position) instead of the Hungarian assignment."""
    if not references:
        raise StyleIDError("references is empty: give {name: photo} for at least one person")
    names = [str(n) for n in references]
    device = str(getattr(encoder, "device", "cpu"))
    refs = []
    with torch.inference_mode():
        for name, value in references.items():
            photos = [load_image(p) for p in _photos(value)]
            for k, photo in enumerate(photos):
                check_one_face(photo, f"reference {name}" + (f" #{k + 1}" if len(photos) > 1 else ""), name, detector,
                               model_rootpath, device)
            z = encoder.embed(photos, crop="face", detector=detector, model_rootpath=model_rootpath, precision=precision)
            refs.append(torch.nn.functional.normalize(z.float().mean(0), dim=-1))
        z_ref = torch.stack(refs).cpu()
        pil = load_image(image)
        faces = detect_all_faces(pil, detector, model_rootpath, device)
        crops = [face_crop(pil, f) for f in faces]
        z = (encoder.embed(crops, crop="face", detector=detector, model_rootpath=model_rootpath, precision=precision)
             .float().cpu() if crops else torch.zeros(0, z_ref.shape[1]))
    if boxes is None:
        return GroupScore(faces, assign_people(z, z_ref, names, threshold, margin))
    unknown = [n for n in boxes if n not in names]
    if unknown:
        raise StyleIDError(f"boxes name {unknown[0]!r}, who has no reference ({', '.join(names)})")
    placed = [list(map(float, b)) for b in boxes.values()]
    for i, a in enumerate(placed):
        for j in range(i + 1, len(placed)):
            if box_overlap(a, placed[j]) > 0:
                raise StyleIDError(f"the boxes of {list(boxes)[i]} and {list(boxes)[j]} overlap; each box must hold one "
                                   "person's face only")
    at = faces_in_boxes(faces, placed)
    pairs = [(f, names.index(n)) for n, f in zip(boxes, at) if f is not None]
    return GroupScore(faces, analyse(cosine_matrix(z, z_ref), pairs, names, threshold, margin))
