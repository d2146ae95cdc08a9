"""A tiny random face-embedding model standing in for insightface / facexlib ArcFace in the tiny stylizers."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from styleid_guidance.options import OFFLINE_DETECTOR
from styleid_guidance.pipelines.face_embeddings import FaceEmbedder

from .rng import seeded


class TinyFaceEmbedder(FaceEmbedder):
    """A seeded random convnet standing in for a face model in offline tests and `Stylizer.tiny()`.

    Deterministic for a given seed and image, and sensitive to the face (different faces → different
    embeddings), which is all the tiny pipelines need. Detection and alignment are the real ones (mtcnn by
    default, which ships its weights)."""

    def __init__(self, dim: int = 512, seed: int = 0, detector: str = OFFLINE_DETECTOR, **kwargs: Any):
        super().__init__(detector=detector, **kwargs)
        with seeded(seed):
            self.net = nn.Sequential(
                nn.Conv2d(3, 8, 4, stride=4), nn.GELU(), nn.Conv2d(8, 16, 4, stride=4), nn.GELU(),
                nn.Flatten(), nn.Linear(16 * 7 * 7, dim),
            ).eval()
        self.embedding_dim = dim

    @torch.no_grad()
    def embed_aligned(self, crops: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 127.5 - 1
        return self.net(x)
