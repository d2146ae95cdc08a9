"""`styleid score`: identity similarity of generated images to references, as people measure it.

Modules: sources (images, videos, folders, `styleid embed` files), pairing (one-to-all, by name, a pairs CSV,
a reference set), cache (embeddings keyed by file content, and frame index), models (the encoders and
baselines, with the no-face policy), embedding (one side through a model, split across accelerate processes),
videos (clips frame by frame), consisid (`--protocol consisid`), plot (`--plot`), run (the whole command as a
function, `score`, and `score_video` for one clip), verification (deepface-shaped results and the human
calibration behind `confidence`).
"""
from __future__ import annotations

from ..lazy import lazy_exports

_EXPORTS = {"score": "run", "score_video": "run", "ScoreResult": "run", "ModelScore": "run", "read_source": "sources", "pair_sources": "pairing",
            "verify": "verification", "VerificationResult": "verification"}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)  # `import styleid_guidance.score` must not import torch
