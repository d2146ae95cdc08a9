"""Embedding cache: one safetensors file per (model, crop), one tensor per image file.

Keyed by the model (a local folder's files' mtimes and sizes included) and by each image's path,
mtime and size, so adding a baseline later computes only the new model's embeddings. An image a face
model embedded without a detected face (the no-face fallback) is marked, so a cached run still counts it.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..files.atomic import atomic_write
from .models import Embedder, ModelSpec

CACHE_FOLDER = "embedding_cache"
MODEL_KEY_LIMIT = 2000  # characters of the model key stored in a cache file (a folder with many files makes it long)


def file_key(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}:{st.st_mtime_ns}:{st.st_size}"


class EmbeddingCache:
    """One safetensors file per (model, crop); one tensor per image, named by a hash of its file key."""

    def __init__(self, folder: Path, model_key: str, crop: str) -> None:
        digest = hashlib.sha1(f"{model_key}|crop={crop}".encode()).hexdigest()[:20]
        self.path = Path(folder) / f"{digest}.safetensors"
        self.model_key, self.crop = model_key, crop
        self.entries: dict[str, torch.Tensor] = {}
        self.dirty = False
        if self.path.exists():
            from safetensors.torch import load_file

            try:
                self.entries = load_file(str(self.path))
            except Exception:  # a damaged cache is only a cache: start over
                self.entries = {}

    @staticmethod
    def _name(path: Path) -> str:
        return hashlib.sha1(file_key(path).encode()).hexdigest()

    def get(self, path: Path) -> torch.Tensor | None:
        return self.entries.get(self._name(path))

    def is_fallback(self, path: Path) -> bool:
        return f"{self._name(path)}.no_face" in self.entries

    def put(self, path: Path, embedding: torch.Tensor, fallback: bool = False) -> None:
        name = self._name(path)
        self.entries[name] = embedding.detach().float().cpu().contiguous()
        if fallback:
            self.entries[f"{name}.no_face"] = torch.ones(1)
        else:
            self.entries.pop(f"{name}.no_face", None)
        self.dirty = True

    def save(self) -> None:
        if not self.dirty:
            return
        from safetensors.torch import save_file

        with atomic_write(self.path) as tmp:
            save_file(self.entries, str(tmp), metadata={"model": self.model_key[:MODEL_KEY_LIMIT], "crop": self.crop})
        self.dirty = False


def embed_with_cache(files: Sequence[Path], spec: ModelSpec, crop: str, cache_dir: Path | None,
                     make_embedder: Callable[[], Embedder], batch_size: int = 32,
                     progress: bool = True) -> tuple[dict[Path, torch.Tensor], int, set[Path]]:
    """Embeddings for `files`; returns (file → [D] tensor, number computed, files embedded without a
    face). Builds the model only on a miss."""
    from tqdm.auto import tqdm

    cache = EmbeddingCache(cache_dir, spec.key, spec.cache_crop(crop)) if cache_dir is not None else None
    result: dict[Path, torch.Tensor] = {}
    fallbacks: set[Path] = set()
    missing = []
    for f in files:
        hit = cache.get(f) if cache is not None else None
        if hit is not None:
            result[f] = hit
            if cache.is_fallback(f):
                fallbacks.add(f)
        else:
            missing.append(f)
    if missing:
        embedder = make_embedder()
        chunk = max(1, batch_size)
        with torch.inference_mode():
            for i in tqdm(range(0, len(missing), chunk), desc=f"embedding ({spec.name})", unit="batch", disable=not progress):
                batch = missing[i : i + chunk]
                z = embedder(batch).float().cpu()
                for f, e in zip(batch, z):
                    result[f] = e
                    if cache is not None:
                        cache.put(f, e, fallback=f in embedder.fallbacks)
                if cache is not None and (i // chunk) % 20 == 19:
                    cache.save()  # long runs keep what they computed if interrupted
        if cache is not None:
            cache.save()
        fallbacks |= embedder.fallbacks & set(missing)
    return result, len(missing), fallbacks

