"""The models `styleid score` runs: StyleID encoders (a folder, a Hub id, test-tiny, a distilled student) and
eval's baselines (arcface, clip, adaface, ...; `NAME=WEIGHTS` as in `styleid eval --baseline`).

Each embeds a batch of files into (embeddings, status per file); status is "ok", "no_face" (no face was found
and the centre crop was embedded instead) or "skipped" (no face, and the policy is to leave the image out).
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from ..errors import NoFaceError, StyleIDError
from ..eval.models import (
    BASELINES,
    ModelSpec,
    ModelUnavailable,
    build_embedder,
    load_encoder,
    parse_baseline,
)

PRETTY = {"styleid": "StyleID", "clip": "CLIP", "siglip2": "SigLIP2", "arcface": "ArcFace", "adaface": "AdaFace",
          "antelopev2": "AntelopeV2"}


def parse_models(texts: Sequence[str]) -> list[ModelSpec]:
    """--model values → specs with unique display names ("StyleID", "ArcFace", "StyleID (student)" ...)."""
    specs = []
    for text in texts:
        kind = text.partition("=")[0].strip().lower()
        spec = parse_baseline(text) if kind in BASELINES else ModelSpec("styleid", "styleid", str(text))
        specs.append(dataclasses.replace(spec, name=PRETTY[spec.kind]))
    names = [s.name for s in specs]
    for i, spec in enumerate(specs):
        if names.count(spec.name) > 1:  # two StyleID folders: tell them apart by the folder's (or id's) name
            specs[i] = dataclasses.replace(spec, name=f"{spec.name} ({Path(spec.source).name or spec.source})")
    if len({s.name for s in specs}) != len(specs):
        raise StyleIDError(f"the same model is named twice: {texts}")
    return specs


class ScoreModel:
    """A loaded model with the run's crop and no-face policy."""

    def __init__(self, spec: ModelSpec, crop: str, no_face: str, device: torch.device, batch_size: int, detector: str,
                 model_rootpath: str | None, precision: Any, num_workers: int) -> None:
        self.spec, self.crop, self.no_face, self.device = spec, crop, no_face, device
        self.detector, self.model_rootpath, self.precision = detector, model_rootpath, precision
        self.num_workers = num_workers
        self.encoder: Any = None
        self.embedder: Any = None
        if spec.kind in ("styleid", "clip", "siglip2"):
            self.encoder = load_encoder(spec, device)
        else:  # face baselines have eval's own no-face fallback ("center"); skip/error are handled here per file
            fallback = "center" if no_face == "center" else "error"
            try:
                self.embedder = build_embedder(dataclasses.replace(spec, no_face=fallback, precision=precision.name),
                                               crop, device, batch_size, detector, model_rootpath)
            except ModelUnavailable as err:  # eval's message names its own flag for the weights
                err.cli = err.for_cli().replace("--baseline ", "--model ")
                raise

    @property
    def embedding_dim(self) -> int | None:
        return self.encoder.embedding_dim if self.encoder is not None else None

    def _prepare(self, file: Path) -> tuple[torch.Tensor | None, str]:
        # the same per-image preparation as StyleIDEncoder.embed, so scores equal `styleid embed` + cosine
        try:
            return self.encoder.prepare_image(str(file), self.crop, self.detector, self.model_rootpath), "ok"
        except NoFaceError:
            if self.no_face == "error":
                raise
            if self.no_face == "skip":
                return None, "skipped"
            return self.encoder.prepare_image(str(file), "center", self.detector, self.model_rootpath), "no_face"

    def embed(self, files: Sequence[Path], pool: ThreadPoolExecutor | None) -> tuple[torch.Tensor, list[str]]:
        """[len(files), D] (rows of skipped files are NaN) and the status of each file."""
        if self.encoder is not None:
            prepared = list(pool.map(self._prepare, files)) if pool is not None else [self._prepare(f) for f in files]
            status = [s for _, s in prepared]
            kept = [x for x, _ in prepared if x is not None]
            dim = self.encoder.embedding_dim
            out = torch.full((len(files), dim), float("nan"))
            if kept:
                z = self.encoder.encode_pixels(torch.stack(kept).to(self.device), self.precision).float().cpu()
                out[[i for i, s in enumerate(status) if s != "skipped"]] = z
            return out, status
        return self._embed_baseline(files)

    def _embed_baseline(self, files: Sequence[Path]) -> tuple[torch.Tensor, list[str]]:
        try:
            z = self.embedder(list(files)).float().cpu()
            return z, ["no_face" if f in self.embedder.fallbacks else "ok" for f in files]
        except NoFaceError:
            if self.no_face == "error":
                raise
        rows, status = [], []
        for f in files:  # one image had no face: find which, one by one
            try:
                rows.append(self.embedder([f]).float().cpu()[0])
                status.append("no_face" if f in self.embedder.fallbacks else "ok")
            except NoFaceError:
                rows.append(None)
                status.append("skipped")
        dim = next((len(r) for r in rows if r is not None), 1)
        return torch.stack([r if r is not None else torch.full((dim,), float("nan")) for r in rows]), status


def default_workers() -> int:
    return min(4, os.cpu_count() or 1)
