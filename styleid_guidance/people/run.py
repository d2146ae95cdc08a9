"""`score_people(ref, gen, ...)`: `styleid score --people` as a function (no printing, no files).

Every face of every generated image is detected once; each model embeds the loose crop around each face and
each person's reference photos; faces are then assigned to people (`assign.assign_people`, the Hungarian
assignment) or, with match="position", taken from where people.json placed each person.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import StyleIDError
from ..options import DEFAULT_DETECTOR, DEFAULT_THRESHOLD, RELEASED_MODEL
from .assign import DEFAULT_MARGIN, PeopleResult, analyse, assign_people, cosine_matrix
from .embedding import check_references, embed_crops, embed_people, faces_of, load_model
from .faces import face_boxes, face_crop, faces_in_boxes
from .inputs import People, read_boxes, read_generated, read_people

MATCHES = ("identity", "position")


@dataclass
class ImagePeople:
    """One generated image: its faces' boxes (left to right) and, per model, the people analysis."""

    name: str
    boxes: list[list[float]]
    results: dict[str, PeopleResult] = field(default_factory=dict)


@dataclass
class PeopleScore:
    people: People
    generated: str
    match: str
    threshold: float
    margin: float
    models: dict[str, str]  # display name → source
    images: list[ImagePeople]

    def model_summary(self, model: str) -> dict[str, Any]:
        results = [im.results[model] for im in self.images]
        sims = np.array([p.similarity for r in results for p in r.people if p.found], np.float64)
        return {"model": self.models[model], "similarity": float(sims.mean()) if len(sims) else None,
                "std": float(sims.std(ddof=1)) if len(sims) > 1 else 0.0 if len(sims) else None,
                "images": len(results), "people": len(self.people.names), "found": len(sims),
                "missing": sum(len(r.missing) for r in results), "unknown": sum(len(r.unknown) for r in results),
                "swapped": sum(len(r.swaps) for r in results), "merged": sum(len(r.merges) for r in results),
                "duplicates": sum(len(r.duplicates) for r in results), "threshold": self.threshold, "margin": self.margin}

    def line(self, model: str) -> str:
        """`StyleID: 0.712 ± 0.081 (images=3, found=5, missing=1, unknown=1, swapped=0, merged=0, duplicates=0 @0.40)`."""
        s = self.model_summary(model)
        counts = (f"images={s['images']}, found={s['found']}, missing={s['missing']}, unknown={s['unknown']}, "
                  f"swapped={s['swapped']}, merged={s['merged']}, duplicates={s['duplicates']} @{_threshold(self.threshold)}")
        if s["similarity"] is None:
            return f"{model}: undefined ({counts})"
        return f"{model}: {s['similarity']:.3f} ± {s['std']:.3f} ({counts})"

    def rows(self) -> list[dict[str, Any]]:
        """One CSV row per model, image and person."""
        out = []
        for model in self.models:
            for im in self.images:
                r = im.results[model]
                swaps = {s.assigned: s.closer for s in r.swaps}
                merged = {f: names for f, names in r.merges}
                for p in r.people:
                    out.append({"model": model, "image": im.name, "person": p.name,
                                "status": "found" if p.found else "missing",
                                "similarity": "" if p.similarity is None else f"{p.similarity:.6f}",
                                "face": "" if p.face is None else p.face,
                                "box": "" if p.face is None else " ".join(f"{v:g}" for v in im.boxes[p.face]),
                                "swapped_with": swaps.get(p.name, ""),
                                "merged_with": "" if p.face is None else
                                " ".join(n for n in merged.get(p.face, []) if n != p.name),
                                "faces": len(r.face_person), "unknown_faces": len(r.unknown)})
        return out

    def summary(self) -> dict[str, Any]:
        return {"mode": "people", "match": self.match, "reference": self.people.where, "generated": self.generated,
                "people": {n: [str(p) for p in ph] for n, ph in zip(self.people.names, self.people.photos)},
                "models": {m: self.model_summary(m) for m in self.models},
                "images": [{"image": im.name, "faces": im.boxes,
                            "models": {m: r.to_dict() for m, r in im.results.items()}} for im in self.images]}


def _threshold(t: float) -> str:
    """0.40 as `styleid score` prints it; a finer threshold (0.997) with all its digits, not rounded to 1.00."""
    return f"{t:.2f}" if abs(round(t, 2) - t) < 1e-12 else f"{t:g}"


def score_people(ref: str | Path, gen: str | Path, models: Sequence[str] | None = None, *, match: str = "identity",
                 threshold: float = DEFAULT_THRESHOLD, margin: float = DEFAULT_MARGIN, device: str | None = None,
                 precision: str = "fp32", batch_size: int = 32, detector: str = DEFAULT_DETECTOR,
                 model_rootpath: str | None = None) -> PeopleScore:
    """Per person and generated image: found (its similarity) or missing; per image unknown faces, swaps, merges
    and duplicates (styleid_guidance.people.assign). ref: a folder, one photo or subfolder per person. gen: an
    image or a folder. match: "identity" (Hungarian on similarity) or "position" (gen's people.json boxes)."""
    from ..devices import resolve_device, resolve_precision
    from ..score.models import parse_models

    if match not in MATCHES:
        raise StyleIDError(f"match must be one of {', '.join(MATCHES)}, got {match!r}")
    people = read_people(ref)
    folder, names, files = read_generated(gen)
    boxes = read_boxes(folder, names, people.names) if match == "position" else None
    analyse(np.zeros((0, len(people.names))), [], people.names, threshold, margin)  # bad threshold / margin: now
    specs = parse_models(list(models or [RELEASED_MODEL]))
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    check_references(people, detector, model_rootpath, str(dev))
    faces = faces_of(files, detector, model_rootpath, str(dev))
    crops = [[face_crop(f, face) for face in fs] for f, fs in zip(files, faces)]
    images = [ImagePeople(n, face_boxes(fs)) for n, fs in zip(names, faces)]
    for spec in specs:
        model = load_model(spec, dev, prec, batch_size, detector, model_rootpath)
        z_ref = embed_people(model, people)
        for im, fs, cs in zip(images, faces, crops):
            z, _ = embed_crops(model, cs)
            if boxes is None:
                im.results[spec.name] = assign_people(z, z_ref, people.names, threshold, margin)
                continue
            placed = boxes[im.name]
            at = faces_in_boxes(fs, list(placed.values()))
            pairs = [(f, people.names.index(p)) for p, f in zip(placed, at) if f is not None]
            im.results[spec.name] = analyse(cosine_matrix(z, z_ref), pairs, people.names, threshold, margin)
    return PeopleScore(people, str(gen), match, float(threshold), float(margin), {s.name: s.source for s in specs}, images)
