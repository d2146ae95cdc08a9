"""Verification results in the shape deepface users know, and the human calibration that gives `confidence`.

`VerificationResult.to_dict()` uses deepface's `DeepFace.verify` field names where they mean the same
(`verified`, `threshold`, `model`, `detector_backend`, `facial_areas` with x, y, w, h, `time` in seconds) and
reports `similarity`: a cosine *similarity* (higher = more alike; `verified` is similarity ≥ threshold), not
deepface's `distance`. `confidence` (0–100, as deepface's) is the human-fitted logistic calibration of `styleid
eval` — P(a person says "same person" | similarity) — when the model folder carries `calibration.json`
(`styleid eval --save-calibration`), else None: without people's judgements a percentage would be made up.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import StyleIDError
from ..eval.calibration import read_calibration
from ..options import DEFAULT_DETECTOR, DEFAULT_THRESHOLD, RELEASED_MODEL

@dataclass
class VerificationResult:
    """One pair: deepface's field names where they mean the same; `similarity` is a cosine similarity."""

    verified: bool | None
    similarity: float
    threshold: float
    model: str
    detector_backend: str
    facial_areas: dict[str, dict[str, Any]]
    time: float
    confidence: float | None = None
    img1_path: str = ""
    img2_path: str = ""
    similarity_metric: str = "cosine_similarity"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("extra")
        out.update(self.extra)
        if not math.isfinite(self.similarity):
            out["similarity"] = None  # JSON has no NaN
        return out


def facial_area(image: Any, crop: str, detector: str, model_rootpath: str | None, name: str) -> dict[str, Any]:
    """deepface's facial_area ({x, y, w, h, left_eye, right_eye}) of the region that was embedded."""
    from ..files.images import load_image

    pil = load_image(image)
    w, h = pil.size
    if crop == "face":
        from ..faces.detection import largest_face

        face = largest_face(pil, detector=detector, model_rootpath=model_rootpath, name=name)
        x0, y0, x1, y1 = (float(v) for v in face.box)
        # deepface: left_eye is the person's left eye (on the image's right); landmarks are [right, left, ...] on screen
        eye_a, eye_b = (tuple(round(float(v), 1) for v in p) for p in face.landmarks[:2])
        right, left = sorted([eye_a, eye_b])
        return {"x": round(x0), "y": round(y0), "w": round(x1 - x0), "h": round(y1 - y0), "left_eye": left, "right_eye": right}
    if crop == "center":
        side = min(w, h)
        return {"x": (w - side) // 2, "y": (h - side) // 2, "w": side, "h": side, "left_eye": None, "right_eye": None}
    return {"x": 0, "y": 0, "w": w, "h": h, "left_eye": None, "right_eye": None}


def verify(img1: Any, img2: Any | list[Any], model: Any = RELEASED_MODEL, *, threshold: float = DEFAULT_THRESHOLD, crop: str = "face",
           detector: str = DEFAULT_DETECTOR, model_rootpath: str | None = None, precision: str | None = None,
           device: Any = None, model_name: str | None = None, facial_areas: bool = True) -> VerificationResult | list[VerificationResult]:
    """deepface-style `verify`: img1 against img2 (or each of a list). `model`: an id / folder / "test-tiny" or a
    loaded StyleIDEncoder (then pass `model_name` for the result and the calibration's folder). facial_areas=False
    leaves them empty and saves the second face detection they cost."""
    import time

    import torch

    from ..encoder.model import StyleIDEncoder
    if not math.isfinite(threshold):
        raise StyleIDError(f"threshold must be a finite number, got {threshold!r}")
    start = time.perf_counter()
    many = isinstance(img2, (list, tuple))
    others = list(img2) if many else [img2]
    name = model_name or (str(model) if not isinstance(model, torch.nn.Module) else "StyleIDEncoder")
    encoder = model if isinstance(model, torch.nn.Module) else StyleIDEncoder.from_pretrained(str(model), device=device).eval()
    calibration = read_calibration(name) if Path(name).is_dir() else None
    with torch.inference_mode():
        z = encoder.embed([img1, *others], crop=crop, detector=detector, model_rootpath=model_rootpath, precision=precision)
    sims = (z[1:] @ z[0]).tolist()
    backend = detector if crop == "face" else "skip"  # deepface's name for "no detection"
    label = lambda im: str(im) if isinstance(im, (str, os.PathLike)) else type(im).__name__
    area = (lambda im: facial_area(im, crop, detector, model_rootpath, label(im))) if facial_areas else (lambda im: {})
    area1 = area(img1)
    elapsed = time.perf_counter() - start
    out = []
    for other, sim in zip(others, sims):
        finite = math.isfinite(sim)
        out.append(VerificationResult(
            verified=bool(sim >= threshold) if finite else None, similarity=float(sim), threshold=threshold, model=name,
            detector_backend=backend,
            facial_areas={"img1": area1, "img2": area(other)},
            time=round(elapsed, 4), img1_path=label(img1), img2_path=label(other),
            confidence=round(100.0 * calibration.probability(sim), 2) if calibration is not None and finite else None))
    return out if many else out[0]
