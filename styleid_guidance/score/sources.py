"""What `styleid score` reads: an image, a folder of images (recursive, sorted), or an embeddings file
written by `styleid embed` (like pytorch-fid's precomputed `.npz` statistics)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import StyleIDError
from ..files.embeddings import read_embeddings_and_model
from ..files.images import IMAGE_SUFFIXES, list_images, load_image

EMBEDDING_SUFFIXES = (".npy", ".safetensors")


@dataclass
class Source:
    """One side of the comparison. `names` are what pairing matches on: paths relative to a folder, the
    names stored in an embeddings file, or an image's file name."""

    where: str
    kind: str  # "image" | "folder" | "embeddings"
    names: list[str]
    files: list[Path] = field(default_factory=list)  # image files, in `names` order (empty for embeddings)
    embeddings: torch.Tensor | None = None  # [N, D], L2-normalised (embeddings files only)
    model: str = ""  # the model an embeddings file records ("" when it records none)

    def __len__(self) -> int:
        return len(self.names)


def read_source(text: str | Path) -> Source:
    """An image, folder or embeddings file → Source; anything else is a one-line StyleIDError naming it."""
    path = Path(text)
    if path.is_dir():
        files = list_images(path)
        if not files:
            raise StyleIDError(f"{text}: no images (.png, .jpg, .webp ...) found in this folder")
        return Source(str(text), "folder", [f.relative_to(path).as_posix() for f in files], files)
    if not path.exists():
        raise StyleIDError(f"{text}: no such file or folder")
    if path.suffix.lower() in EMBEDDING_SUFFIXES:
        emb, names, model = read_embeddings_and_model(path)
        if emb.ndim != 2 or len(emb) == 0:
            raise StyleIDError(f"{text}: expected [N, D] embeddings with N ≥ 1, got shape {tuple(emb.shape)}")
        if not emb.is_floating_point() or not torch.isfinite(emb).all():
            raise StyleIDError(f"{text}: the embeddings contain NaN or inf (or are not floats); embed again")
        if len(set(names)) != len(names):
            raise StyleIDError(f"{text}: the same name appears on several rows; embed again")
        # unit length as `embed` writes them; re-normalising makes a hand-made file score as cosine too
        return Source(str(text), "embeddings", list(names), embeddings=torch.nn.functional.normalize(emb.float(), dim=-1),
                      model=model)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise StyleIDError(f"{text}: not an image ({', '.join(IMAGE_SUFFIXES)}), a folder, or a .npy/.safetensors "
                           f"embeddings file from styleid embed")
    load_image(path)  # a damaged single image fails now, before any model loads
    return Source(str(text), "image", [path.name], [path])


def check_model_matches(source: Source, model: str, dim: int | None = None) -> None:
    """An embeddings file scores only against the model that wrote it: say so when the ids or widths differ."""
    if source.kind != "embeddings":
        return
    recorded = source.model
    same = recorded == model or (recorded and Path(recorded).exists() and Path(model).exists()
                                 and Path(recorded).resolve() == Path(model).resolve())
    if recorded and not same:
        raise StyleIDError(f"{source.where}: embeddings of model {recorded!r}, not {model!r}; embed again with that model "
                           f"or score with model {recorded!r}",
                           cli=f"{source.where}: embeddings of model {recorded!r}, not {model!r}; embed again with "
                               f"--model {model} or score with --model {recorded}")
    if dim is not None and source.embeddings is not None and source.embeddings.shape[1] != dim:
        raise StyleIDError(f"{source.where}: embeddings of dimension {source.embeddings.shape[1]}, but model {model!r} "
                           f"gives {dim}; they come from another model, embed again with this one")

