"""Identity similarity of images to a reference under StyleID, ArcFace and CLIP, with verdicts.

Every image is scored on its largest detected face (a crop aligned to each model's template, as the
released StyleID model card advises: "a rough crop around the face"). What happens without a face is
the caller's choice: Verify, like `styleid verify --crop face`, gives no verdict for it; Stylize and
JoJoGAN score a generated image without a detectable face on its centre crop and say so.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from styleid_guidance.faces.detection import FaceRegion
from styleid_guidance.files.images import to_tensor
from styleid_guidance.options import DEFAULT_THRESHOLD

from .profiles import Models
from .weight_sources import IDENTITY_LABELS

# Same/different cut-offs on cosine similarity. StyleID: 0.4, the paper's headline operating point.
# ArcFace and CLIP: the best of the paper's three fixed thresholds (0.3 / 0.4 / 0.5) for each model on
# StyleBench-H Cross-ID (ArcFace Acc .793 at 0.3; CLIP .702 at 0.5: any two CLIP faces look alike).
THRESHOLDS = {"styleid": DEFAULT_THRESHOLD, "arcface": 0.3, "clip": 0.5}


@dataclass
class Prepared:
    """An image and where its face is (None: no face found, scored on the centre crop)."""

    name: str
    image: Image.Image
    region: FaceRegion | None = None


def prepare(models: Models, image: Image.Image, name: str, detect: bool = True) -> Prepared:
    """`detect=False`: no face search (the image is scored on the caller's fallback crop)."""
    if not detect:
        return Prepared(name, image, None)
    faces = models.detect_faces(image)
    region = FaceRegion.from_landmarks(faces[0].landmarks, image.size) if faces else None
    return Prepared(name, image, region)


def no_face_note(items: Sequence[Prepared]) -> str | None:
    missing = [p.name for p in items if p.region is None]
    if not missing:
        return None
    shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
    return f"No face found in {shown}: scored on the centre crop, so those scores say little."


def verdict(model: str, similarity: float | None) -> str:
    if similarity is None:
        return "n/a"
    return "same" if similarity >= THRESHOLDS[model] else "different"


@torch.no_grad()
def embed_prepared(models: Models, model: str, items: Sequence[Prepared], fallback: str = "center") -> torch.Tensor:
    """[N, D] embeddings, batched over images of equal size and crop kind; an item without a face
    region is embedded with the `fallback` crop ("center" or "none": the whole image)."""
    face_loss = models.identity_loss(model, crop="face")
    centre_loss = models.identity_loss(model, crop=fallback)
    out: list[torch.Tensor | None] = [None] * len(items)
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(items):
        groups.setdefault((p.region is None, p.image.size), []).append(i)
    for (centre, _), idx in groups.items():
        x = to_tensor([items[i].image for i in idx])
        if centre:
            z = centre_loss.embed(x)
        else:
            region = FaceRegion(np.stack([items[i].region.landmarks for i in idx]))
            z = face_loss.embed(x, face_region=region)
        for j, i in enumerate(idx):
            out[i] = z[j]
    return torch.stack(out)  # type: ignore[arg-type]


@dataclass
class Scores:
    """similarity[model][i] of item i to the reference; `unavailable[model]` = why a model has no scores."""

    similarity: dict[str, list[float]] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)


def score(models: Models, reference: Prepared, items: Sequence[Prepared], model_names: Sequence[str], progress=None,
          span: tuple[float, float] = (0.0, 1.0), fallback: str = "center") -> Scores:
    """Similarities of `items` to `reference`; progress moves through `span` of the caller's bar."""
    from styleid_guidance.errors import StyleIDError

    result = Scores()
    for k, model in enumerate(model_names):
        if progress is not None:
            progress(span[0] + (span[1] - span[0]) * k / len(model_names), desc=f"scoring with {IDENTITY_LABELS[model]}")
        try:
            z = embed_prepared(models, model, [reference, *items], fallback=fallback)
        except StyleIDError as err:
            result.unavailable[model] = str(err)
            continue
        result.similarity[model] = [float(v) for v in (z[1:] @ z[0])]
    return result


def caption(scores: Scores, i: int, model_names: Sequence[str] = ("styleid", "arcface")) -> str:
    parts = []
    for m in model_names:
        sims = scores.similarity.get(m)
        parts.append(f"{IDENTITY_LABELS[m]} {sims[i]:.2f}" if sims else f"{IDENTITY_LABELS[m]} n/a")
    return " · ".join(parts)
