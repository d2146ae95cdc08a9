"""People and face crops through one `styleid score` model (a StyleID encoder or an eval baseline).

Crops go through the model as lossless PNG files, exactly the way `styleid verify` / `styleid score` read an
image file, so a person's similarity equals `styleid verify` on the same crop.
"""
from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ..errors import StyleIDError
from ..faces.detection import Face
from ..files.images import ImageInput, load_image
from .faces import detect_all_faces
from .inputs import People


def check_one_face(photo: ImageInput, label: str, name: str, detector: str, model_rootpath: str | None,
                   device: str | None) -> None:
    """A reference photo shows exactly one face: else one line naming the photo and how to fix it."""
    faces = detect_all_faces(photo, detector, model_rootpath, device)
    if not faces:
        raise StyleIDError(f"{label}: no face found in {name}'s reference photo; use a photo where the face is clear "
                           "and at least ~40 pixels wide")
    if len(faces) > 1:
        w, h = load_image(photo).size
        boxes = "; ".join(f"{[round(float(v)) for v in f.box]}" for f in faces)
        raise StyleIDError(f"{label}: {len(faces)} faces found in {name}'s reference photo (boxes {boxes} in the "
                           f"{w}x{h} photo); crop it to {name}'s face and hair, one person per photo")


def check_references(people: People, detector: str, model_rootpath: str | None, device: str | None) -> None:
    for name, photos in zip(people.names, people.photos):
        for photo in photos:
            check_one_face(photo, str(photo), name, detector, model_rootpath, device)


def embed_files(model: Any, files: Sequence[Path]) -> tuple[torch.Tensor, list[str]]:
    """[N, D] L2-normalised embeddings and each file's status ("ok", or "no_face": its centre crop was used)."""
    if not files:
        return torch.zeros(0, model.embedding_dim or 1), []
    z, status = model.embed(list(files), None)
    return torch.nn.functional.normalize(z.float(), dim=-1), status


def embed_people(model: Any, people: People) -> torch.Tensor:
    """[P, D]: each person's reference embedding (the normalised mean over their photos)."""
    rows = []
    for photos in people.photos:
        z, _ = embed_files(model, photos)
        rows.append(torch.nn.functional.normalize(z.mean(0), dim=-1))
    return torch.stack(rows)


def embed_crops(model: Any, crops: Sequence[Image.Image]) -> tuple[torch.Tensor, list[str]]:
    """Face crops (PIL) → [F, D] through the model, as PNG files (what `styleid verify` would read)."""
    with tempfile.TemporaryDirectory(prefix="styleid-people-") as tmp:
        files = []
        for k, crop in enumerate(crops):
            files.append(Path(tmp) / f"face{k}.png")
            crop.save(files[-1], format="PNG", compress_level=1)
        return embed_files(model, files)


def load_model(spec: Any, device: torch.device, precision: Any, batch_size: int, detector: str,
               model_rootpath: str | None) -> Any:
    """A `styleid score` model that embeds the largest face of each image, its centre crop where none is found."""
    from ..score.models import ScoreModel

    return ScoreModel(spec, "face", "center", device, batch_size, detector, model_rootpath, precision, 0)


def faces_of(images: Sequence[Path], detector: str, model_rootpath: str | None, device: str | None) -> list[list[Face]]:
    return [detect_all_faces(f, detector, model_rootpath, device) for f in images]
