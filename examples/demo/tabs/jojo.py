"""JoJoGAN tab: one style reference + a face → the ArcFace-trained and StyleID-trained generators side by side.

Training is the slow part (300 iterations by default with real models), so fine-tuned generators are
kept per (reference image hash, settings, identity loss): a second face on the same reference renders
in a second.
"""
from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Hashable

from PIL import Image

from styleid_guidance.errors import NoFaceError, StyleIDError

from ..limits import Limits, display_name, open_image
from ..profiles import Models
from ..weight_sources import IDENTITY_LABELS
from ..render import Cell, image_grid
from ..scoring import caption, no_face_note, prepare, score

TRAINED_WITH = ("arcface", "styleid")
HEADERS = ["generator", "StyleID similarity", "ArcFace similarity", "training"]
DEFAULT_ID_WEIGHT = 1.0


def _no_progress(*args, **kwargs) -> None:
    pass


class GeneratorCache:
    """A small LRU of fine-tuned generators (each real one holds ~120 MB)."""

    def __init__(self, size: int = 4):
        self.size = size
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            return None

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


def file_hash(path: str | os.PathLike) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass
class JoJoResult:
    grid: Image.Image
    rows: list[list]
    message: str
    trained: int  # how many generators were trained (not taken from the cache)


def _training(done: int, steps: int) -> float:
    """Training fills 2-90 % of the progress bar."""
    return 0.02 + 0.88 * done / steps


def run_jojogan(models: Models, style_path, face_path, num_iter, id_weight, preserve_color: bool, seed, limits: Limits,
                cache: GeneratorCache, progress=_no_progress) -> JoJoResult:
    num_iter, seed, id_weight = int(num_iter or 0), int(seed or 0), float(id_weight)
    if not 1 <= num_iter <= 2000:
        raise StyleIDError(f"iterations must be from 1 to 2000, got {num_iter}")
    if not id_weight >= 0:
        raise StyleIDError(f"identity weight must be >= 0, got {id_weight}")
    style = open_image(style_path, "style reference", limits)
    face = open_image(face_path, "face photo", limits)
    style_name, face_name = display_name(style_path), display_name(face_path)
    progress(0.005, desc="finding the face")
    reference = prepare(models, face, face_name)
    if reference.region is None:  # before minutes of training, not after
        raise NoFaceError(f"face photo ({face_name}): no face found; upload a photo with one clear, roughly frontal face")
    progress(0.01, desc="loading JoJoGAN (first use reads the StyleGAN2 and e4e checkpoints)")
    jj = models.jojogan()
    settings = (models.profile, file_hash(style_path), num_iter, round(id_weight, 6), bool(preserve_color), seed)

    todo = [name for name in TRAINED_WITH if cache.get((*settings, name)) is None]
    steps = max(len(todo) * num_iter, 1)
    generators, how = {}, {}
    for name in TRAINED_WITH:
        key = (*settings, name)
        g = cache.get(key)
        if g is not None:
            generators[name], how[name] = g, "cached"
            continue
        offset = todo.index(name) * num_iter
        label = IDENTITY_LABELS[name]

        def report(i: int, n: int, losses: dict, offset: int = offset, label: str = label) -> None:
            progress(_training(offset + i + 1, steps), desc=f"training with the {label} loss: iteration {i + 1}/{n}, "
                                                             f"style loss {losses.get('style', float('nan')):.3f}")

        progress(_training(offset, steps), desc=f"training with the {label} loss")
        loss = models.identity_loss(name) if id_weight > 0 else None
        start = time.perf_counter()
        try:
            g = jj.finetune([style], identity_loss=loss if loss is not None else "none", id_weight=id_weight,
                            num_iter=num_iter, preserve_color=bool(preserve_color), seed=seed, progress=report,
                            show_progress=False)
        except NoFaceError:
            raise NoFaceError(f"style reference ({style_name}): no face found; JoJoGAN needs a stylised portrait "
                              "with a visible face") from None
        cache.put(key, g)
        generators[name], how[name] = g, f"trained, {num_iter} iterations in {time.perf_counter() - start:.1f} s"

    progress(0.92, desc="rendering your face with both generators")
    try:
        outputs = [jj.stylize(face, generators[name]) for name in TRAINED_WITH]
    except NoFaceError:
        raise NoFaceError(f"face photo ({face_name}): no face found; upload a photo with one clear, roughly frontal face") from None

    progress(0.95, desc="scoring")
    prepared = [prepare(models, im, f"{IDENTITY_LABELS[n]}-trained output") for im, n in zip(outputs, TRAINED_WITH)]
    scores = score(models, reference, prepared, ("styleid", "arcface"))
    cells = [[Cell(style, style_name), Cell(face, face_name)]
             + [Cell(im, caption(scores, i)) for i, im in enumerate(outputs)]]
    grid = image_grid(cells, ["JoJoGAN"], ["style reference", "face", "ArcFace-trained", "StyleID-trained"])
    rows = [[f"{IDENTITY_LABELS[n]}-trained"]
            + [round(scores.similarity[m][i], 3) if m in scores.similarity else "n/a" for m in ("styleid", "arcface")]
            + [how[n]] for i, n in enumerate(TRAINED_WITH)]
    lines = [f"{num_iter} iterations, identity weight {id_weight:g}, seed {seed}"
             + (", colours preserved" if preserve_color else "") + ". Scores: similarity of each output to your face."]
    for note in [no_face_note([reference, *prepared]), *scores.unavailable.values()]:
        if note:
            lines.append(f"⚠️ {note}")
    lines += [f"ℹ️ {n}" for n in models.notes]
    return JoJoResult(grid, rows, "\n\n".join(lines), trained=len(todo))
