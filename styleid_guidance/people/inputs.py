"""What `styleid score --people` reads: the people (REF), the generated images (GEN) and, for
`--match position`, the boxes where the pipeline placed each person (GEN's people.json).

REF is a folder. Each image in it is one person, named by its file stem (refs/ann.png → "ann"); each
subfolder is one person with several photos (refs/bob/*.jpg → "bob", compared through their mean embedding,
as `--reference-set` does).

people.json (in the GEN folder, or beside a single GEN image) maps each generated image, by its path
relative to GEN, to the face box of each person placed in it, x1, y1, x2, y2 in pixels:

    {"family.png": {"ann": [40, 60, 200, 240], "bob": [260, 50, 420, 230]}}
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from ..errors import StyleIDError
from ..files.images import IMAGE_SUFFIXES, list_images, load_image
from ..files.video import is_video
from .faces import box_overlap

PEOPLE_JSON = "people.json"


@dataclass
class People:
    """names[k]'s reference photos are photos[k] (one, or the several of a subfolder)."""

    where: str
    names: list[str]
    photos: list[list[Path]]


def read_people(ref: str | Path) -> People:
    """REF folder → People; one-line StyleIDErrors for a missing or empty folder and duplicate names."""
    folder = Path(ref)
    if not folder.is_dir():
        raise StyleIDError(f"{ref}: --people needs a folder of reference photos, one per person (ann.png, bob.jpg) "
                           "or one subfolder of photos per person")
    by_name: dict[str, list[Path]] = {}
    sources: dict[str, list[str]] = {}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            photos = list_images(entry, recursive=False)
            if not photos:
                raise StyleIDError(f"{entry}: a person's folder with no photos (.png, .jpg ...); add photos or remove it")
            name = entry.name
        elif entry.suffix.lower() in IMAGE_SUFFIXES:
            photos, name = [entry], entry.stem
        else:
            continue
        by_name.setdefault(name, []).extend(photos)
        sources.setdefault(name, []).append(entry.name)
    dupes = {n: s for n, s in sources.items() if len(s) > 1}
    if dupes:
        name, entries = next(iter(dupes.items()))
        raise StyleIDError(f"{ref}: the person name {name!r} is given twice ({', '.join(entries)}); rename one, or put all "
                           f"of {name}'s photos in the folder {folder / name}")
    if not by_name:
        raise StyleIDError(f"{ref}: no reference photos (.png, .jpg ...) in this folder; put one photo per person in it, "
                           "named after the person")
    for photos in by_name.values():
        for p in photos:
            load_image(p)  # a damaged photo fails now, before any model loads
    return People(str(ref), list(by_name), list(by_name.values()))


def read_generated(gen: str | Path) -> tuple[Path, list[str], list[Path]]:
    """GEN (an image or a folder, recursive) → (its folder, names relative to it, files)."""
    path = Path(gen)
    if path.is_dir():
        videos = sorted(f for f in path.rglob("*") if f.is_file() and is_video(f))
        if videos:  # refused rather than left out unseen
            raise StyleIDError(f"{gen}: holds {len(videos)} video(s) ({videos[0].relative_to(path).as_posix()} ...); "
                               "--people scores images: score the videos without --people, or move them out")
        files = list_images(path)
        if not files:
            raise StyleIDError(f"{gen}: no images (.png, .jpg ...) in this folder")
        return path, [f.relative_to(path).as_posix() for f in files], files
    if not path.exists():
        raise StyleIDError(f"{gen}: no such file or folder")
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise StyleIDError(f"{gen}: --people scores images ({', '.join(IMAGE_SUFFIXES)}) or a folder of them")
    load_image(path)
    return path.parent, [path.name], [path]


def _box(value: object, where: str) -> list[float]:
    if (not isinstance(value, (list, tuple)) or len(value) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)):
        raise StyleIDError(f"{where}: a box is [x1, y1, x2, y2] in pixels, got {value!r}")
    x1, y1, x2, y2 = map(float, value)
    if x2 <= x1 or y2 <= y1:
        raise StyleIDError(f"{where}: box {list(value)} needs x2 > x1 and y2 > y1")
    return [x1, y1, x2, y2]


def read_boxes(folder: Path, images: list[str], names: list[str]) -> dict[str, dict[str, list[float]]]:
    """people.json in `folder` → {image: {person: box}}, checked: every image listed, known people, sane boxes
    that do not overlap."""
    path = folder / PEOPLE_JSON
    if not path.is_file():
        raise StyleIDError(f"{path}: not found; --match position reads the face box of each person in each image from "
                           f'it, e.g. {{"{images[0]}": {{"{names[0]}": [x1, y1, x2, y2]}}}}; or use --match identity')
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise StyleIDError(f"{path}: not readable JSON ({err}); fix the file") from None
    if not isinstance(data, dict):
        raise StyleIDError(f"{path}: expected an object mapping each image to {{person: [x1, y1, x2, y2]}}")
    out: dict[str, dict[str, list[float]]] = {}
    for image in images:
        entry = data.get(image)
        if not isinstance(entry, dict):
            raise StyleIDError(f"{path}: no boxes for {image!r}; add {{person: [x1, y1, x2, y2]}} for it")
        boxes = {}
        for person, value in entry.items():
            if person not in names:
                raise StyleIDError(f"{path}: {image}: {person!r} is not a person of REF ({', '.join(names)}); "
                                   "name the box after a reference photo")
            boxes[person] = _box(value, f"{path}: {image}: {person}")
        placed = list(boxes.items())
        for i, (a, box_a) in enumerate(placed):
            for b, box_b in placed[i + 1:]:
                if box_overlap(box_a, box_b) > 0:
                    raise StyleIDError(f"{path}: {image}: the boxes of {a} and {b} overlap; each box must hold one "
                                       "person's face only: shrink them to the faces")
        out[image] = boxes
    unknown = sorted(set(data) - set(images))
    if unknown:
        raise StyleIDError(f"{path}: {unknown[0]!r} is not an image of GEN; remove it or fix its path (relative to GEN)")
    return out
