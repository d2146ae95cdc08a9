"""Embeddings of `styleid score`, cached by file content: a second run over the same references (or a
folder copied elsewhere, or touched) embeds nothing again.

eval's cache (styleid_guidance.eval.cache) keys an image by path, mtime and size, which is right for an eval
folder; score's inputs move around (a references folder reused by many runs), so here the key is the
SHA-256 of the bytes, and a video frame's key is (SHA-256 of the clip, frame index). One safetensors file per (model, crop, no-face policy, detector, precision) under
`$STYLEID_CACHE/score` (default ~/.cache/styleid/score).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..eval.cache import EmbeddingCache
from ..files.digest import sha256_file
from ..files.video import Frame

CACHE_ENV = "STYLEID_CACHE"


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or "~/.cache/styleid").expanduser() / "score"


class ContentCache(EmbeddingCache):
    """EmbeddingCache keyed by content; a skipped image (no face, `no_face="skip"`) is remembered as such."""

    def __init__(self, folder: Path, model_key: str, setting: str) -> None:
        self._hashes: dict[Path, str] = {}
        super().__init__(folder, model_key, setting)

    def _name(self, path: Path | Frame) -> str:  # type: ignore[override]
        if isinstance(path, Frame):  # a video frame: the clip's content and the frame's index
            return f"{self._name(path.video)}@{path.index}"
        if path not in self._hashes:
            self._hashes[path] = sha256_file(path)
        return self._hashes[path]

    def frame_time(self, video: Path, index: int) -> float | None:
        """The presentation time cached with a frame's embedding (None when the frame is not cached)."""
        t = self.entries.get(f"{self._name(video)}@{index}.time")
        return float(t[0]) if t is not None else None

    def put_frame_time(self, frame: Frame) -> None:
        self.entries[f"{self._name(frame)}.time"] = torch.tensor([frame.time], dtype=torch.float64)

    def save(self) -> None:
        """Write the cache, keeping entries another process (or run) wrote since this one was read."""
        if self.dirty and self.path.exists():
            from safetensors.torch import load_file

            try:
                self.entries = {**load_file(str(self.path)), **self.entries}
            except Exception:  # a damaged cache is only a cache: this run's entries replace it
                pass
        super().save()

    def is_skipped(self, path: Path) -> bool:
        return f"{self._name(path)}.skip" in self.entries

    def put_skipped(self, path: Path) -> None:
        self.entries[f"{self._name(path)}.skip"] = torch.ones(1)
        self.dirty = True
