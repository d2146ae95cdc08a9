"""Synthetic StyleBench-like data so the train → eval loop runs offline in minutes on a CPU.

    styleid smoke-data OUT [--train-ids 48] [--eval-ids 16] [--levels 1,3,5,7] [--image-size 96]

Each identity is a procedurally drawn face with its own geometry (face shape, eye spacing and size,
nose, mouth, ears, hairline) and colours (skin, hair, irises), plus accessories (glasses, beard).
Every image also gets nuisance variation (pose, scale, background, lighting, expression), so even
two photos of one person differ. Stylisation mimics what the paper's generators do: a method
renders the face *through* a style — the style's palette replaces the identity's colours, edges
and posterisation change the texture, and the geometry drifts toward the style's template face.
The strength level l = 1..7 (s = l/7) sets how far it goes, so identity gets harder to see as l
grows. Colour is a weak cue across styles; geometry survives — an encoder has to learn that, and a
random one does not see it.

Written layout (StyleBench-S naming, strength in the file name):

    OUT/stylebench-s/            training identities
        p3/{id}.png                          source photo
        {method}/{style}/{id}_{level}.png    stylised image, idx = strength level 1..7
        stylebench.json                      {"idx_is_level": true, ...}
    OUT/stylebench-h/            held-out identities, same layout, never seen in training
    OUT/pairs.csv                source,stylized,label,split,method,style,strength (paths relative)

Splits in pairs.csv mirror the paper's Table 1: `cross-id` (training methods and styles, unseen
identities), `cross-style` (training methods, unseen styles), `cross-method` (an unseen method).
Pairs are balanced: each stylised held-out image is paired with its own source (label 1) and with
another held-out identity's source (label 0).
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..errors import StyleIDError

# method -> styles used for training identities / styles kept for the cross-style split
TRAIN_STYLES = {"toon": ("orc", "pop", "noir"), "paint": ("sepia", "pastel", "ink")}
HELDOUT_STYLES = {"toon": ("neon",), "paint": ("frost",)}
HELDOUT_METHOD = {"mosaic": ("retro", "mono")}

# style palettes: dark → mid → light colours the luminance is mapped through
PALETTES = {
    "orc": ((20, 45, 10), (70, 140, 40), (190, 230, 120)),
    "pop": ((30, 0, 90), (230, 30, 120), (255, 240, 60)),
    "noir": ((10, 10, 10), (120, 120, 120), (245, 245, 245)),
    "sepia": ((50, 30, 10), (150, 105, 60), (240, 220, 180)),
    "pastel": ((120, 110, 170), (230, 170, 200), (250, 240, 225)),
    "ink": ((15, 20, 60), (60, 90, 160), (235, 235, 250)),
    "neon": ((10, 0, 30), (0, 200, 220), (255, 60, 230)),
    "frost": ((20, 40, 80), (120, 180, 230), (240, 250, 255)),
    "retro": ((60, 20, 20), (220, 120, 40), (250, 230, 160)),
    "mono": ((0, 0, 0), (90, 90, 90), (255, 255, 255)),
}


@dataclass
class FaceParams:
    skin: np.ndarray
    hair: np.ndarray
    iris: np.ndarray
    face_w: float
    face_h: float
    eye_y: float
    eye_dx: float
    eye_r: float
    eye_aspect: float
    brow_tilt: float
    nose_len: float
    nose_w: float
    mouth_y: float
    mouth_w: float
    smile: float
    ear: float
    fringe: float
    long_hair: bool
    glasses: bool
    beard: bool

    GEOMETRY = ("face_w", "face_h", "eye_y", "eye_dx", "eye_r", "eye_aspect", "brow_tilt", "nose_len",
                "nose_w", "mouth_y", "mouth_w", "smile", "ear", "fringe")

    @classmethod
    def random(cls, rng: np.random.Generator) -> "FaceParams":
        return cls(
            skin=rng.uniform([120, 80, 60], [250, 215, 190]), hair=rng.uniform(0, 255, 3), iris=rng.uniform(0, 255, 3),
            face_w=rng.uniform(0.27, 0.37), face_h=rng.uniform(0.33, 0.43), eye_y=rng.uniform(-0.12, -0.02),
            eye_dx=rng.uniform(0.08, 0.16), eye_r=rng.uniform(0.025, 0.055), eye_aspect=rng.uniform(0.45, 1.0),
            brow_tilt=rng.uniform(-0.03, 0.03), nose_len=rng.uniform(0.05, 0.14), nose_w=rng.uniform(0.02, 0.06),
            mouth_y=rng.uniform(0.14, 0.24), mouth_w=rng.uniform(0.06, 0.16), smile=rng.uniform(-1, 1),
            ear=rng.uniform(0.02, 0.07), fringe=rng.uniform(0.05, 0.25), long_hair=bool(rng.random() < 0.4),
            glasses=bool(rng.random() < 0.3), beard=bool(rng.random() < 0.25),
        )

    def blend(self, other: "FaceParams", t: float) -> "FaceParams":
        """Geometry moved a fraction t toward `other` (a style's template face)."""
        out = FaceParams(**self.__dict__)
        for name in self.GEOMETRY:
            setattr(out, name, (1 - t) * getattr(self, name) + t * getattr(other, name))
        return out


def _rgb(c: np.ndarray) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.clip(c, 0, 255))  # type: ignore[return-value]


def render_face(p: FaceParams, rng: np.random.Generator, size: int = 96) -> np.ndarray:
    """Draw one photo of the face with random pose, scale, background, light and expression."""
    S = size * 2  # supersample, then downsample for anti-aliasing
    bg = rng.uniform(40, 230, 3)
    img = Image.new("RGB", (S, S), _rgb(bg))
    d = ImageDraw.Draw(img)
    scale = S * rng.uniform(0.94, 1.06)
    cx, cy = S / 2 + rng.uniform(-0.04, 0.04) * S, S / 2 + rng.uniform(-0.04, 0.04) * S + 0.04 * S
    smile = float(np.clip(p.smile + rng.uniform(-0.3, 0.3), -1, 1))

    def pt(x: float, y: float) -> tuple[float, float]:
        return cx + x * scale, cy + y * scale

    def box(x: float, y: float, rx: float, ry: float) -> list[float]:
        (x0, y0), (x1, y1) = pt(x - rx, y - ry), pt(x + rx, y + ry)
        return [x0, y0, x1, y1]

    hair, skin = _rgb(p.hair), _rgb(p.skin)
    if p.long_hair:
        d.rectangle(box(0, 0.12, p.face_w + 0.05, p.face_h * 0.9), fill=hair)
    d.ellipse(box(0, -p.face_h * 0.25, p.face_w + 0.03, p.face_h * 0.85), fill=hair)
    for side in (-1, 1):
        d.ellipse(box(side * p.face_w, 0.0, p.ear, p.ear * 1.6), fill=_rgb(p.skin * 0.9))
    d.ellipse(box(0, 0, p.face_w, p.face_h), fill=skin)
    d.chord(box(0, -p.face_h, p.face_w * 1.02, p.face_h * (0.25 + p.fringe) + p.face_h * 0.05), 180, 360, fill=hair)
    if p.beard:
        d.chord(box(0, p.mouth_y, p.face_w * 0.8, p.face_h * 0.5), 0, 180, fill=_rgb(p.hair * 0.8))
    lw = max(1, int(0.012 * scale))
    for side in (-1, 1):
        ex, ey = side * p.eye_dx, p.eye_y
        d.ellipse(box(ex, ey, p.eye_r * 1.4, p.eye_r * 1.4 * p.eye_aspect), fill=(250, 250, 250))
        d.ellipse(box(ex, ey, p.eye_r * 0.7, p.eye_r * 0.7), fill=_rgb(p.iris))
        d.ellipse(box(ex, ey, p.eye_r * 0.3, p.eye_r * 0.3), fill=(10, 10, 10))
        by = ey - p.eye_r * 2.2
        d.line([pt(ex - p.eye_r * 1.5, by + side * p.brow_tilt), pt(ex + p.eye_r * 1.5, by - side * p.brow_tilt)],
               fill=_rgb(p.hair * 0.6), width=lw * 2)
        if p.glasses:
            d.ellipse(box(ex, ey, p.eye_r * 2.2, p.eye_r * 2.0), outline=(20, 20, 20), width=lw)
    d.line([pt(0, p.eye_y + 0.02), pt(p.nose_w, p.eye_y + 0.02 + p.nose_len), pt(-p.nose_w * 0.3, p.eye_y + 0.03 + p.nose_len)],
           fill=_rgb(p.skin * 0.6), width=lw)
    sag = 0.05 * smile
    d.line([pt(-p.mouth_w, p.mouth_y - sag), pt(0, p.mouth_y + sag), pt(p.mouth_w, p.mouth_y - sag)],
           fill=(150, 40, 50), width=lw * 2, joint="curve")
    img = img.rotate(rng.uniform(-8, 8), resample=Image.BICUBIC, fillcolor=_rgb(bg))
    arr = np.asarray(img.resize((size, size), Image.LANCZOS)).astype(np.float32)
    # directional light: a linear gradient across the face
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:size, 0:size] / size - 0.5
    light = 1 + rng.uniform(0.0, 0.35) * (np.cos(angle) * xx + np.sin(angle) * yy)
    arr = arr * light[..., None] + rng.normal(0, 3, arr.shape)
    return np.clip(arr, 0, 255).astype(np.uint8)


def _palette_map(arr: np.ndarray, palette: Sequence[Sequence[int]]) -> np.ndarray:
    lum = arr.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) / 255.0
    stops = np.asarray(palette, np.float32)
    lo = np.clip(lum * 2, 0, 1)[..., None]
    hi = np.clip(lum * 2 - 1, 0, 1)[..., None]
    return np.where(lum[..., None] < 0.5, stops[0] + (stops[1] - stops[0]) * lo, stops[1] + (stops[2] - stops[1]) * hi)


def stylize(p: FaceParams, method: str, style: str, level: int, rng: np.random.Generator, size: int = 96) -> np.ndarray:
    """Render identity `p` through (method, style) at strength level 1..7."""
    s = level / 7.0
    template = FaceParams.random(np.random.default_rng(_style_seed(method, style)))
    face = render_face(p.blend(template, 0.45 * s), rng, size)
    styled = _palette_map(face, PALETTES[style])
    mix = 0.35 + 0.6 * s  # how much of the identity's own colour is replaced
    out = (1 - mix) * face.astype(np.float32) + mix * styled
    img = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
    if method == "toon":
        levels = int(round(8 - 5 * s))  # flatter colour areas as strength grows
        img = Image.fromarray((np.asarray(img) // (256 // levels) * (256 // levels)).astype(np.uint8))
        edges = np.asarray(img.convert("L").filter(ImageFilter.GaussianBlur(0.8)).filter(ImageFilter.FIND_EDGES)).astype(np.float32)
        ink = np.clip(edges / 32.0 * s * 1.5, 0, 1)[..., None]
        img = Image.fromarray((np.asarray(img) * (1 - ink)).astype(np.uint8))
    elif method == "paint":
        img = img.filter(ImageFilter.GaussianBlur(0.4 + 1.2 * s))
        arr = np.asarray(img).astype(np.float32)
        arr += rng.normal(0, 6 + 14 * s, arr.shape[:2])[..., None]  # canvas grain
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    elif method == "mosaic":
        cells = max(8, int(size / (1.5 + 3 * s)))
        img = img.resize((cells, cells), Image.BILINEAR).resize((size, size), Image.NEAREST)
    else:
        raise StyleIDError(f"unknown synthetic method {method!r}")
    return np.asarray(img)


def _style_seed(method: str, style: str) -> int:
    # stable across processes (str hash is salted)
    return int.from_bytes(f"{method}/{style}".encode(), "little") % (2**32)


def _write(arr: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _write_split(root: Path, ids: Sequence[str], params: dict[str, FaceParams], styles: dict[str, Sequence[str]],
                 levels: Sequence[int], size: int, seed: int) -> list[tuple[str, str, str, int, Path]]:
    written = []
    for ident in ids:
        rng = np.random.default_rng([seed, int(ident), 7])
        _write(render_face(params[ident], rng, size), root / "p3" / f"{ident}.png")
        for method, method_styles in styles.items():
            for style in method_styles:
                for level in levels:
                    path = root / method / style / f"{ident}_{level}.png"
                    _write(stylize(params[ident], method, style, level, rng, size), path)
                    written.append((ident, method, style, level, path))
    (root / "stylebench.json").write_text(json.dumps({"idx_is_level": True, "levels": list(levels), "num_levels": 7}, indent=2))
    return written


def make_smoke_dataset(out: str | Path, train_ids: int = 48, eval_ids: int = 16, levels: Sequence[int] = (1, 3, 5, 7),
                       size: int = 96, seed: int = 0) -> dict[str, Path]:
    """Write the smoke dataset; returns {"train": folder, "eval": folder, "pairs": csv path}."""
    if train_ids < 2 or eval_ids < 2:
        raise StyleIDError("the training and held-out identity counts must each be at least 2")
    if not levels or any(not 1 <= lv <= 7 for lv in levels):
        raise StyleIDError(f"levels must be integers in 1..7, got {list(levels)}")
    if size < 32:
        raise StyleIDError(f"image size must be at least 32 px, got {size}")
    out = Path(out)
    names = [f"{i:05d}" for i in range(train_ids + eval_ids)]
    params = {n: FaceParams.random(np.random.default_rng([seed, int(n)])) for n in names}
    train_root, eval_root = out / "stylebench-s", out / "stylebench-h"
    _write_split(train_root, names[:train_ids], params, TRAIN_STYLES, levels, size, seed)
    eval_styles = {m: TRAIN_STYLES[m] + HELDOUT_STYLES[m] for m in TRAIN_STYLES} | HELDOUT_METHOD
    stylised = _write_split(eval_root, names[train_ids:], params, eval_styles, levels, size, seed)
    rng = np.random.default_rng([seed, 99])
    held = names[train_ids:]
    rows = []
    for ident, method, style, level, path in stylised:
        split = ("cross-method" if method in HELDOUT_METHOD else
                 "cross-style" if style in HELDOUT_STYLES.get(method, ()) else "cross-id")
        other = held[(held.index(ident) + int(rng.integers(1, len(held)))) % len(held)]
        rel = path.relative_to(out).as_posix()
        for src, label in ((ident, 1), (other, 0)):
            rows.append({"source": f"stylebench-h/p3/{src}.png", "stylized": rel, "label": label,
                         "split": split, "method": method, "style": style, "strength": level})
    pairs = out / "pairs.csv"
    with open(pairs, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return {"train": train_root, "eval": eval_root, "pairs": pairs}


def register(sub: Any) -> None:
    """`styleid smoke-data OUT`."""
    from ..cli import flags, values

    p = sub.add_parser("smoke-data", help="synthetic StyleBench-layout data (train + held-out + pairs.csv) for CPU smoke runs",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("out", metavar="OUT", help="output folder")
    p.add_argument("--train-ids", type=values.positive_int, default=48, help="training identities (default: %(default)s)")
    p.add_argument("--eval-ids", type=values.positive_int, default=16, help="held-out identities for pairs.csv (default: %(default)s)")
    flags.add_levels(p, default="1,3,5,7")
    p.add_argument("--image-size", type=values.positive_int, default=96, help="image side in px (default: %(default)s)")
    flags.add_seed(p)
    p.set_defaults(func=run)


def run(args: Any) -> int:
    from ..cli.parsing import for_option
    from ..files.atomic import check_writable_dir

    with for_option("OUT"):
        check_writable_dir(args.out)
    paths = make_smoke_dataset(args.out, args.train_ids, args.eval_ids, args.levels, args.image_size, args.seed)
    from ..cli.runtime import command_logger

    command_logger("smoke-data").info(f"wrote {paths['train']} (training), {paths['eval']} (held-out) and {paths['pairs']}")
    return 0
