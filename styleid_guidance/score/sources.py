"""What `styleid score` reads: an image, a video, a folder of images and videos (recursive, sorted), or an
embeddings file written by `styleid embed` (like pytorch-fid's precomputed `.npz` statistics)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import Arg, StyleIDError
from ..files.embeddings import read_embeddings_and_model
from ..files.images import IMAGE_SUFFIXES, load_image
from ..files.video import DEFAULT_FRAMES, VIDEO_SUFFIXES, VideoReader, is_video

EMBEDDING_SUFFIXES = (".npy", ".safetensors")


@dataclass
class Source:
    """One side of the comparison. `names` are what pairing matches on: paths relative to a folder, the
    names stored in an embeddings file, or an image's file name."""

    where: str
    kind: str  # "image" | "video" | "folder" | "embeddings"
    names: list[str]
    files: list[Path] = field(default_factory=list)  # image files, in `names` order (empty for embeddings)
    embeddings: torch.Tensor | None = None  # [N, D], L2-normalised (embeddings files only)
    model: str = ""  # the model an embeddings file records ("" when it records none)
    videos: dict[int, VideoReader] = field(default_factory=dict)  # row → its clip (the other rows are images)

    def __len__(self) -> int:
        return len(self.names)


def _media(folder: Path) -> list[Path]:
    """Images and videos under a folder, recursive, sorted."""
    suffixes = IMAGE_SUFFIXES + VIDEO_SUFFIXES
    return sorted(p for p in folder.glob("**/*") if p.is_file() and p.suffix.lower() in suffixes)


def read_source(text: str | Path, frames: int | None = DEFAULT_FRAMES) -> Source:
    """An image, video, folder (of images and videos) or embeddings file → Source; anything else is a one-line
    StyleIDError naming it. A video is one item, scored on `frames` frames sampled over it (None = all); each
    video is opened and its frames counted here, so a damaged one is refused before any model loads."""
    path = Path(text)
    if path.is_dir():
        files = _media(path)
        if not files:
            raise StyleIDError(f"{text}: no images (.png, .jpg, .webp ...) or videos (.mp4, .webm, .gif ...) found in "
                               "this folder")
        videos = {i: VideoReader(f, frames) for i, f in enumerate(files) if is_video(f)}
        return Source(str(text), "folder", [f.relative_to(path).as_posix() for f in files], files, videos=videos)
    if not path.exists():
        raise StyleIDError(f"{text}: no such file or folder")
    if is_video(path):
        return Source(str(text), "video", [path.name], [path], videos={0: VideoReader(path, frames)})
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
        raise StyleIDError(f"{text}: not an image ({', '.join(IMAGE_SUFFIXES)}), a video ({', '.join(VIDEO_SUFFIXES)}), "
                           f"a folder, or a .npy/.safetensors embeddings file from styleid embed")
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
        raise StyleIDError("{where}: embeddings of model {recorded!r}, not {model!r}; embed again with {given} or score "
                           "with {other}", where=source.where, recorded=recorded, model=model, given=Arg("model", model),
                           other=Arg("model", recorded))
    if dim is not None and source.embeddings is not None and source.embeddings.shape[1] != dim:
        raise StyleIDError(f"{source.where}: embeddings of dimension {source.embeddings.shape[1]}, but model {model!r} "
                           f"gives {dim}; they come from another model, embed again with this one")

