"""Training data: StyleBench-S and plain identity folders, with per-sample style metadata.

Layouts (picked automatically: a `p3/` folder means StyleBench-S):

* StyleBench-S — `p3/{id}.png` source photos and `{method}/{style}/{id}_{idx}.png` stylised images.
  Sources count as images of their identity. The strength level (1..7, s = l/7) is read from the path
  when it is there: a folder named `level{l}` / `l{l}` / `strength{l}` anywhere below `{style}`
  (`{method}/{style}/level3/{id}_{idx}.png`), or the `{idx}` itself when the root holds a
  `stylebench.json` with `{"idx_is_level": true}` (what `train.smoke_data` writes). Otherwise the
  level is unknown (None) — the published dataset keeps only ~2 levels per cell and does not say.
  A root made by `styleid generate` holds `manifest.jsonl` (one record per image): then each image's
  level is the manifest's, and the path rules above are only the fallback for images it does not list.
* Identity folders — `{identity}/**/*.png`: one folder per person, any images inside.

Unreadable images are skipped with a count in the log; identities left with fewer than 2 images are
dropped with a warning (they cannot form a positive pair); an empty result is a StyleIDError.

Training transform (documented because it changes what the encoder learns): decode to RGB →
random resized crop keeping 80–100 % of the area at aspect 0.9–1.1 → bicubic antialiased resize to
the encoder's input size → horizontal flip with p = 0.5 → normalise with the encoder's mean/std.
With `augment=False` it is exactly the inference preprocessing (`crop="center"`). Randomness comes
from a per-sample seed handed out by the sampler, so a resumed run sees the same pixels.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from styleid_guidance.errors import StyleIDError
from styleid_guidance.files.images import IMAGE_SUFFIXES, load_image
from styleid_guidance.perception.manifest import manifest_levels
from styleid_guidance.encoder.config import OPENAI_MEAN, OPENAI_STD
from styleid_guidance.encoder.preprocess import clip_preprocess, normalize

logger = logging.getLogger("styleid.train")

SOURCE_FOLDER = "p3"
MANIFEST = "stylebench.json"
_LEVEL_DIR = re.compile(r"^(?:level|lvl|l|strength)[-_]?(\d+)$", re.IGNORECASE)


@dataclass(frozen=True)
class Sample:
    path: Path
    identity: str
    method: str | None = None  # None for source photos / identity folders
    style: str | None = None
    level: int | None = None  # strength level 1..7 when the path says so

    @property
    def is_source(self) -> bool:
        return self.method is None


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def detect_layout(root: Path) -> str:
    return "stylebench" if (root / SOURCE_FOLDER).is_dir() else "folders"


def scan_stylebench(root: Path) -> list[Sample]:
    manifest = root / MANIFEST
    idx_is_level = False
    if manifest.is_file():
        try:
            idx_is_level = bool(json.loads(manifest.read_text()).get("idx_is_level", False))
        except (json.JSONDecodeError, AttributeError):
            raise StyleIDError(f"{manifest}: not valid JSON; fix or delete it") from None
    listed = manifest_levels(root)  # relative path → level, from `styleid generate`'s manifest.jsonl
    unlisted = 0
    samples = [Sample(p, p.stem) for p in sorted((root / SOURCE_FOLDER).iterdir()) if _is_image(p)]
    for method_dir in sorted(d for d in root.iterdir() if d.is_dir() and d.name != SOURCE_FOLDER and not d.name.startswith(".")):
        for style_dir in sorted(d for d in method_dir.iterdir() if d.is_dir()):
            for path in sorted(p for p in style_dir.rglob("*") if _is_image(p)):
                identity, sep, idx = path.stem.rpartition("_")
                if not sep:
                    identity, idx = path.stem, ""
                rel = path.relative_to(root).as_posix()
                if listed is not None and rel in listed:
                    samples.append(Sample(path, identity, method_dir.name, style_dir.name, listed[rel]))
                    continue
                unlisted += listed is not None
                level = None
                for part in path.relative_to(style_dir).parts[:-1]:
                    if match := _LEVEL_DIR.match(part):
                        level = int(match.group(1))
                if level is None and idx_is_level and idx.isdigit():
                    level = int(idx)
                samples.append(Sample(path, identity, method_dir.name, style_dir.name, level))
    if unlisted:
        logger.warning("%d stylised image(s) under %s are not in its manifest.jsonl (a generate run still going, or "
                       "files added by hand); their levels come from their paths", unlisted, root)
    return samples


def scan_identity_folders(root: Path) -> list[Sample]:
    samples = []
    for id_dir in sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")):
        samples.extend(Sample(p, id_dir.name) for p in sorted(id_dir.rglob("*")) if _is_image(p))
    return samples


def _readable(path: Path) -> bool:
    try:
        with Image.open(path) as im:
            im.verify()  # header + chunk checksums, without decoding every pixel
        return True
    except Exception:  # PIL raises many types for bad files; any of them means "skip it"
        return False


class TrainTransform:
    """Decoded RGB tensor [3,H,W] in [0,1] + seed → normalised [3,S,S] (see module docstring)."""

    def __init__(self, image_size: int, mean: Sequence[float] = OPENAI_MEAN, std: Sequence[float] = OPENAI_STD,
                 augment: bool = True, min_area: float = 0.8, flip: bool = True) -> None:
        self.image_size, self.mean, self.std = int(image_size), tuple(mean), tuple(std)
        self.augment, self.min_area, self.flip = augment, min_area, flip

    def __call__(self, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
        if not self.augment:
            return clip_preprocess(x[None], self.image_size, self.mean, self.std, crop="center")[0]
        rng = np.random.default_rng(seed)
        h, w = x.shape[-2:]
        area = rng.uniform(self.min_area, 1.0) * h * w
        aspect = np.exp(rng.uniform(np.log(0.9), np.log(1.1)))
        ch = int(round(min(h, np.sqrt(area / aspect))))
        cw = int(round(min(w, np.sqrt(area * aspect))))
        top = int(rng.integers(0, h - ch + 1))
        left = int(rng.integers(0, w - cw + 1))
        x = x[:, top : top + ch, left : left + cw]
        size = (self.image_size, self.image_size)
        x = F.interpolate(x[None], size=size, mode="bicubic", align_corners=False, antialias=True)[0].clamp(0, 1)
        if self.flip and rng.random() < 0.5:
            x = x.flip(-1)
        return normalize(x[None], self.mean, self.std)[0]


class IdentityDataset(torch.utils.data.Dataset):
    """Images grouped by identity. Items are `(pixels, label)`; index with `(i, aug_seed)` keys.

    Attributes: `samples` (list[Sample]), `identities` (sorted names), `labels` (int per sample).
    """

    def __init__(self, root: str | Path, transform: TrainTransform | None = None, layout: str = "auto",
                 check_images: bool = True, min_images_per_id: int = 2) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise StyleIDError(f"--data {self.root}: no such folder")
        layout = detect_layout(self.root) if layout == "auto" else layout
        if layout not in ("stylebench", "folders"):
            raise StyleIDError(f"layout must be auto, stylebench or folders, got {layout!r}")
        self.layout = layout
        samples = scan_stylebench(self.root) if layout == "stylebench" else scan_identity_folders(self.root)
        self.num_skipped = 0
        if check_images:
            bad = [s.path for s in samples if not _readable(s.path)]
            if bad:
                self.num_skipped = len(bad)
                logger.warning("skipped %d unreadable image(s) under %s (first: %s)", len(bad), self.root, bad[0])
                bad_set = set(bad)
                samples = [s for s in samples if s.path not in bad_set]
        counts: dict[str, int] = {}
        for s in samples:
            counts[s.identity] = counts.get(s.identity, 0) + 1
        small = sorted(i for i, c in counts.items() if c < min_images_per_id)
        if small:
            logger.warning("dropped %d identit%s with fewer than %d images (e.g. %s)", len(small),
                           "y" if len(small) == 1 else "ies", min_images_per_id, ", ".join(small[:5]))
            small_set = set(small)
            samples = [s for s in samples if s.identity not in small_set]
        if not samples:
            expected = ("p3/{id}.png + {method}/{style}/{id}_{idx}.png" if layout == "stylebench"
                        else "{identity}/*.png with at least 2 images per identity")
            raise StyleIDError(f"--data {self.root}: no usable training images (expected {expected})")
        self.samples = samples
        self.identities = sorted({s.identity for s in samples})
        index = {name: i for i, name in enumerate(self.identities)}
        self.labels = [index[s.identity] for s in samples]
        self.dropped_identities = small
        self.transform = transform or TrainTransform(224)
        self._by_label: dict[int, list[int]] = {}
        for i, label in enumerate(self.labels):
            self._by_label.setdefault(label, []).append(i)

    @property
    def num_classes(self) -> int:
        return len(self.identities)

    def __len__(self) -> int:
        return len(self.samples)

    def _decode(self, i: int) -> torch.Tensor:
        arr = np.array(load_image(self.samples[i].path))  # writable copy for torch
        return torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        i, seed = key if isinstance(key, tuple) else (key, 0)
        label = self.labels[i]
        try:
            x = self._decode(i)
        except StyleIDError as err:
            # a file that passed the header check but fails to decode: substitute a sibling of the same
            # identity so the batch keeps its P×K shape (and its positives)
            siblings = self._by_label[label]
            alt = siblings[(siblings.index(i) + 1) % len(siblings)]
            logger.warning("could not decode %s (%s); using %s instead", self.samples[i].path, err, self.samples[alt].path)
            x = self._decode(alt)
        return self.transform(x, seed), label


def collate(batch: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    pixels = torch.stack([b[0] for b in batch])
    labels = torch.tensor([b[1] for b in batch], dtype=torch.long)
    return pixels, labels
