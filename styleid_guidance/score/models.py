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

from ..errors import Arg, NoFaceError, StyleIDError
from ..files.video import Frame
from ..eval.models import (
    BASELINES,
    ModelSpec,
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
            # a weights error names its argument (eval's --baseline); `styleid score` words it as --model (for_option)
            self.embedder = build_embedder(dataclasses.replace(spec, no_face=fallback, precision=precision.name),
                                           crop, device, batch_size, detector, model_rootpath)

    @property
    def embedding_dim(self) -> int | None:
        return self.encoder.embedding_dim if self.encoder is not None else None

    def _prepare(self, file: Path | Frame) -> tuple[torch.Tensor | None, str]:
        # the same per-image preparation as StyleIDEncoder.embed, so scores equal `styleid embed` + cosine
        item = file.image if isinstance(file, Frame) else str(file)
        try:
            return self.encoder.prepare_image(item, self.crop, self.detector, self.model_rootpath), "ok"
        except NoFaceError:
            if self.no_face == "error":
                if isinstance(file, Frame):  # the decoded frame has no file name of its own
                    raise NoFaceError("{name}: no face found; use {fix} or skip", name=file.name,
                                      fix=Arg("no_face", "center")) from None
                raise
            if self.no_face == "skip":
                return None, "skipped"
            return self.encoder.prepare_image(item, "center", self.detector, self.model_rootpath), "no_face"

    def embed(self, files: Sequence[Path | Frame], pool: ThreadPoolExecutor | None) -> tuple[torch.Tensor, list[str]]:
        """[len(files), D] (rows of skipped files are NaN) and the status of each file (or decoded video frame)."""
        if any(isinstance(f, Frame) for f in files) and self.encoder is None:
            return self._embed_frames_baseline(files)
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


    def _embed_frames_baseline(self, items: Sequence[Path | Frame]) -> tuple[torch.Tensor, list[str]]:
        # eval's embedders read files (and key their no-face fallbacks by path): give each frame a lossless PNG
        import tempfile

        with tempfile.TemporaryDirectory(prefix="styleid-frames-") as tmp:
            files = []
            for k, item in enumerate(items):
                if isinstance(item, Frame):
                    files.append(Path(tmp) / f"{k}.png")
                    item.image.save(files[-1], format="PNG", compress_level=1)
                else:
                    files.append(item)
            try:
                return self._embed_baseline(files)
            except NoFaceError as err:
                names = {str(f): (i.name if isinstance(i, Frame) else str(i)) for f, i in zip(files, items)}
                text = next((n for f, n in names.items() if f in str(err)), "a video frame")
                raise NoFaceError("{name}: no face found; use {fix} or skip", name=text, fix=Arg("no_face", "center")) from None


def default_workers() -> int:
    return min(4, os.cpu_count() or 1)
