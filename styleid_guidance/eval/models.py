"""The models `styleid eval` compares: the StyleID encoder and the paper's baselines.

`NAME=MODEL` overrides a baseline's weights: an open_clip `name[/pretrained]` for clip/siglip2
(`clip=test-tiny` is the offline random test model), a weights file/folder for arcface
(`arcface=random` is a random IR-SE50, for tests).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..errors import StyleIDError

BASELINES = {"clip": "ViT-L-14/openai", "siglip2": "ViT-L-16-SigLIP2-256/webli", "arcface": "default"}


@dataclass
class ModelSpec:
    """A model to evaluate: its display name, kind (styleid | clip | siglip2 | arcface) and weights."""

    name: str
    kind: str
    source: str

    @property
    def key(self) -> str:
        """Identifies the weights for the cache; a local folder's files' mtimes and sizes are part of it."""
        path = Path(self.source)
        if path.exists():
            files = sorted(p for p in (path.rglob("*") if path.is_dir() else [path]) if p.is_file())
            stamp = ";".join(f"{p.relative_to(path) if path.is_dir() else p.name}:{p.stat().st_mtime_ns}:{p.stat().st_size}" for p in files)
            return f"{self.kind}:{path.resolve()}:{stamp}"
        return f"{self.kind}:{self.source}"


def parse_baseline(text: str) -> ModelSpec:
    kind, _, override = text.partition("=")
    kind = kind.strip().lower()
    if kind not in BASELINES:
        raise StyleIDError(f"--baseline {text!r}: choose from {', '.join(BASELINES)} (optionally NAME=MODEL)")
    return ModelSpec(kind, kind, override.strip() or BASELINES[kind])


Embedder = Callable[[Sequence[Path]], torch.Tensor]


def build_embedder(spec: ModelSpec, crop: str, device: torch.device, batch_size: int, detector: str,
                   model_rootpath: str | None) -> Embedder:
    """Load the model and return files → [N,D] normalised embeddings."""
    from ..encoder import StyleIDEncoder

    if spec.kind == "arcface":
        from ..arcface import build_arcface_backbone
        from ..identity import build_identity_loss

        if spec.source == "random":
            # deterministic, so cached and fresh embeddings agree; the caller's RNG state is left alone
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model: Any = build_arcface_backbone()
        else:
            model = None if spec.source == "default" else spec.source
        loss = build_identity_loss("arcface", model=model, device=device, crop=crop, detector=detector,
                                   model_rootpath=model_rootpath)

        def embed_arcface(files: Sequence[Path]) -> torch.Tensor:
            return loss.embed_photos([str(f) for f in files])

        return embed_arcface

    if spec.kind == "styleid":
        encoder = StyleIDEncoder.from_pretrained(spec.source, device=device)
    else:
        name, _, pretrained = spec.source.partition("/")
        pretrained = None if name == "test-tiny" else (pretrained or "openai")
        with torch.random.fork_rng(devices=[]):  # a random test model must be the same on every run for the cache
            torch.manual_seed(0)
            encoder = StyleIDEncoder.from_open_clip(name, pretrained=pretrained, lora_rank=0, device=device)
    encoder.eval()

    def embed_encoder(files: Sequence[Path]) -> torch.Tensor:
        return encoder.embed([str(f) for f in files], crop=crop, batch_size=batch_size, detector=detector,
                             model_rootpath=model_rootpath)

    return embed_encoder

