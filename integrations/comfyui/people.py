"""Several people in one image, for the nodes (free of ComfyUI types: [B,3,H,W] tensors in 0..1).

The reference photos are one per person, in order, named by the node's `people` text. Every face of an image is
detected and embedded as `styleid score --people` embeds it (the loose crop around the face, then the model's own
largest-face crop), and faces are assigned to people by the Hungarian assignment of `styleid_guidance.people`,
which defines found, missing, unknown, swaps and merges once for the CLI, the nodes and the demo.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from styleid_guidance.errors import StyleIDError
from styleid_guidance.faces.detection import Face
from styleid_guidance.files.images import to_pil, to_tensor
from styleid_guidance.people.assign import DEFAULT_MARGIN, PeopleResult, assign_people
from styleid_guidance.people.draw import annotate_faces
from styleid_guidance.people.faces import crop_box, detect_all_faces, face_crop

from .models import StyleIDModel

FACE_MODES = ("largest", "all")


def check_face_mode(faces: str) -> str:
    if faces not in FACE_MODES:
        raise StyleIDError(f"faces must be one of {', '.join(FACE_MODES)}, got {faces!r}")
    return faces


@dataclass
class ImagePeople:
    faces: list[Face]  # left to right; `result` indexes them
    result: PeopleResult


def person_names(text: str, count: int) -> list[str]:
    """`"ann, bob"` → the names of the `count` reference photos, in order; empty → person_1 … person_N."""
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    if not names:
        return [f"person_{i + 1}" for i in range(count)]
    if len(names) != count:
        raise StyleIDError(f"people names {len(names)} people ({', '.join(names)}) but {count} reference photos are "
                           "connected: give one name per photo, in order")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise StyleIDError(f"people: the name {repeated[0]!r} is given twice; each person needs their own name")
    return names


def faces_in(model: StyleIDModel, image: Image.Image) -> list[Face]:
    """Every face of one image, left to right."""
    return detect_all_faces(image, model.detector, model.model_rootpath, str(model.device))


def embed_references(model: StyleIDModel, photos: Sequence[torch.Tensor], names: Sequence[str]) -> torch.Tensor:
    """[P, D]: one embedding per person; each photo must show exactly one face (else one sentence saying how to fix)."""
    for photo, name in zip(photos, names):
        found = faces_in(model, to_pil(photo.reshape(photo.shape[-3:])))
        if not found:
            raise StyleIDError(f"reference photo of {name}: no face found; connect a photo in which {name}'s face is "
                               "clearly visible")
        if len(found) > 1:
            raise StyleIDError(f"reference photo of {name}: {len(found)} faces found; crop it to {name}'s face alone "
                               "(e.g. with StyleID Pick Face) so the reference is one person")
    z, _ = model.embed(list(photos), "reference")
    return z


def score_people(model: StyleIDModel, references: torch.Tensor, names: Sequence[str], images: torch.Tensor,
                 threshold: float, margin: float = DEFAULT_MARGIN) -> list[ImagePeople]:
    """Each image's faces against the people ([P, D] reference embeddings, one per name)."""
    out = []
    for i, image in enumerate(images):
        pil = to_pil(image)
        faces = faces_in(model, pil)
        crops = [to_tensor(face_crop(pil, f)) for f in faces]
        z = model.embed(crops, f"image {i} face")[0] if crops else torch.zeros(0, references.shape[1])
        out.append(ImagePeople(faces, assign_people(z, references, names, threshold, margin)))
    return out


def summary(people: ImagePeople) -> float:
    """An image's score under faces = all: the lowest similarity over the people, a missing person counting −1, so
    a gate passes an image only when everyone in it is recognisable."""
    sims = [p.similarity if p.found else -1.0 for p in people.result.people]
    return float(min(sims)) if sims else -1.0


def people_csv(results: Sequence[ImagePeople]) -> str:
    """One row per (image, person): the face found for them, its similarity, and what went wrong."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["image", "person", "face", "similarity", "status", "closer_to", "merged_with"])
    for i, item in enumerate(results):
        r = item.result
        swaps = {s.assigned: s.closer for s in r.swaps}
        merged = {f: names for f, names in r.merges}
        for p in r.people:
            others = [n for n in merged.get(p.face, []) if n != p.name] if p.found else []
            writer.writerow([i, p.name, "" if p.face is None else p.face,
                             "" if p.similarity is None else f"{p.similarity:.6f}", "found" if p.found else "missing",
                             swaps.get(p.name, ""), ";".join(others)])
    return buf.getvalue()


def annotate_people(image: torch.Tensor, people: ImagePeople) -> torch.Tensor:
    """The image with every face boxed and labelled with its assigned person (green), or "unknown" (red)."""
    return to_tensor(annotate_faces(to_pil(image), people.faces, people.result))[0]


def pick_region(model: StyleIDModel, image: torch.Tensor, reference: torch.Tensor | None, index: int,
                threshold: float) -> tuple[tuple[int, int, int, int] | None, Face | None, float]:
    """The face to pick in one [3,H,W] image: the one most like `reference` (one person's embedding, from
    `embed_references`), else the index-th from the left. Returns (loose crop box, the face, similarity or nan), or
    (None, None, nan) if none."""
    pil = to_pil(image)
    faces = faces_in(model, pil)
    if not faces:
        return None, None, float("nan")
    if reference is not None:
        crops = [to_tensor(face_crop(pil, f)) for f in faces]
        sims = (model.embed(crops, "face")[0] @ reference).tolist()
        best = int(np.argmax(sims))
        if sims[best] < threshold:
            return None, None, float(sims[best])
        face, sim = faces[best], float(sims[best])
    else:
        if index >= len(faces):
            return None, None, float("nan")
        face, sim = faces[index], float("nan")
    h, w = image.shape[-2:]
    return crop_box(face.box, (w, h)), face, sim


@dataclass
class PeopleScores:
    """What the similarity and gate nodes report under faces = all, per image."""

    results: list[ImagePeople]
    similarity: list[float]  # mean over the people found (-1 when nobody is)
    lowest: list[float]  # `summary`: the weakest person, missing = -1 (what the gate sorts on)
    same: list[bool]  # every person found, no swap

    def table(self) -> str:
        return people_csv(self.results)

    def ui(self) -> list[dict]:
        return [r.result.to_dict() for r in self.results]

    def preview(self, images: torch.Tensor) -> torch.Tensor:
        return torch.stack([annotate_people(x, r) for x, r in zip(images, self.results)])


def score_all_faces(model: StyleIDModel, photos: Sequence[torch.Tensor], people: str, images: torch.Tensor,
                    threshold: float) -> PeopleScores:
    """faces = all: the reference photos are one per person (named by `people`), every face of every image is
    assigned to them."""
    names = person_names(people, len(photos))
    results = score_people(model, embed_references(model, photos, names), names, images, threshold)
    mean = []
    for r in results:
        found = [p.similarity for p in r.result.people if p.found]
        mean.append(float(np.mean(found)) if found else -1.0)
    same = [not r.result.missing and not r.result.swaps for r in results]
    return PeopleScores(results, mean, [summary(r) for r in results], same)
