"""Verify tab, group mode: the last upload is a group photo, the others are one photo per person (named by file).

Every face in the group photo is found, embedded from the loose crop around it as `styleid score --people` does,
and assigned to the people by the Hungarian assignment on StyleID similarity (`styleid_guidance.people`). The table
has one row per person — the face found for them under StyleID, with ArcFace's and CLIP's similarity of that same
face — missing people are listed, swaps flagged, and the picture shows each face's assigned name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from PIL import Image

from styleid_guidance.errors import StyleIDError
from styleid_guidance.options import DEFAULT_SWAP_MARGIN
from styleid_guidance.people.assign import PeopleResult, analyse, hungarian
from styleid_guidance.people.draw import annotate_faces
from styleid_guidance.people.faces import MIN_SCORE, face_crop

from ..profiles import Models
from ..scoring import THRESHOLDS, embed_prepared, prepare, verdict
from ..weight_sources import IDENTITY_LABELS, IDENTITY_MODELS


@dataclass
class GroupResult:
    rows: list[list]
    picture: Image.Image
    message: str
    result: PeopleResult
    skipped: list[str] = field(default_factory=list)


def person_name(file_name: str) -> str:
    return Path(file_name).stem


def run_group(models: Models, people: Sequence[tuple[str, Image.Image]], group: tuple[str, Image.Image],
              progress=None) -> GroupResult:
    """people: (file name, photo) per person, one face each; group: (file name, the group photo)."""
    names = [person_name(n) for n, _ in people]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise StyleIDError(f"two photos are named {repeated[0]!r}: in group mode each person's photo is named after "
                           "them, so rename one")
    refs = []
    for (file_name, photo), name in zip(people, names):
        found = models.detect_faces(photo)
        if len(found) != 1:
            how = "no face found" if not found else f"{len(found)} faces found; crop it to {name}'s face alone"
            raise StyleIDError(f"{file_name}: {how} (in group mode each photo but the last shows one person)")
        refs.append(prepare(models, photo, name))
    group_name, picture = group
    faces = sorted((f for f in models.detect_faces(picture) if f.score >= MIN_SCORE),
                   key=lambda f: (float(f.box[0] + f.box[2]) / 2, float(f.box[1])))
    crops = [prepare(models, face_crop(picture, f), f"face {k + 1}") for k, f in enumerate(faces)]
    similarity: dict[str, tuple] = {}
    unavailable = []
    for k, model in enumerate(IDENTITY_MODELS):
        if progress is not None:
            progress(0.1 + 0.8 * k / len(IDENTITY_MODELS), desc=f"scoring with {IDENTITY_LABELS[model]}")
        try:
            z = embed_prepared(models, model, [*refs, *crops])
        except StyleIDError as err:
            unavailable.append(str(err))
            continue
        similarity[model] = (z[len(refs):] @ z[: len(refs)].T).numpy()  # [faces, people]
    if "styleid" not in similarity:
        raise StyleIDError("StyleID could not be loaded, so nobody can be assigned: " + "; ".join(unavailable))
    sim = similarity["styleid"]
    result = analyse(sim, hungarian(sim), names, THRESHOLDS["styleid"], DEFAULT_SWAP_MARGIN)
    swaps = {s.assigned: s.closer for s in result.swaps}
    rows = []
    for p, person in enumerate(result.people):
        if not person.found:
            rows.append([f"{person.name} (missing)"] + ["n/a", "missing"] * len(IDENTITY_MODELS))
            continue
        row: list = [f"{person.name} (face {person.face + 1})"]
        for model in IDENTITY_MODELS:
            sim = float(similarity[model][person.face, p]) if model in similarity else None
            word = verdict(model, sim)
            if model == "styleid" and person.name in swaps:
                word += f", swap? looks more like {swaps[person.name]}"
            row += [round(sim, 3) if sim is not None else "n/a", word]
        rows.append(row)
    lines = [f"Group photo **{group_name}**: {len(faces)} faces, {len(result.found)} of {len(names)} people found"
             + (f"; missing: {', '.join(result.missing)}" if result.missing else "")
             + (f"; {len(result.unknown)} unknown faces" if result.unknown else "") + "."]
    lines += [f"⚠️ {s.assigned}'s face looks more like {s.closer} ({s.closer_similarity:.2f} vs {s.similarity:.2f})"
              for s in result.swaps]
    lines += [f"⚠️ face {f + 1} matches {' and '.join(n)} at once (merged?)" for f, n in result.merges]
    lines += [f"⚠️ {msg}" for msg in unavailable]
    return GroupResult(rows, annotate_faces(picture, faces, result), "\n\n".join(lines), result)
