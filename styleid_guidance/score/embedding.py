"""One side (references or generated) of `styleid score` through one model: images in batches, videos frame
by frame (`videos.embed_clips`), both through the content cache; split across processes under
`accelerate launch`.

Under accelerate each process embeds its share of the side's images and clips (`split_between_processes`
over the sorted rows), the shares are gathered, and every process ends with the same tensors one process
would have made. Cache files are written one process at a time, each merging what is on disk first, so no
process's embeddings are lost.
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch

from .cache import ContentCache
from .sources import Source
from .videos import ClipEmbeddings, embed_clips

log = logging.getLogger("styleid.score")


@dataclass
class Side:
    """A side's embeddings: [N, D] (NaN rows for items left out; a clip's row is its frames' mean), the status of
    each item, its clips by row, and how many images + frames were embedded now."""

    z: torch.Tensor
    status: list[str]
    clips: dict[int, ClipEmbeddings] = field(default_factory=dict)
    computed: int = 0


def world_size() -> int:
    """Processes of an `accelerate launch` (1 otherwise), read without importing accelerate."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def process_state() -> Any:
    """accelerate's PartialState, asking for CPU ranks without CUDA (PartialState alone ignores ACCELERATE_USE_CPU)."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available())


def _images(source: Source, rows: list[int], model: Any, cache: ContentCache | None, batch_size: int,
            pool: ThreadPoolExecutor | None, progress: bool, side: str) -> tuple[dict[int, tuple[torch.Tensor | None, str]], int]:
    from tqdm.auto import tqdm

    out: dict[int, tuple[torch.Tensor | None, str]] = {}
    missing = []
    for i in rows:
        f = source.files[i]
        if cache is not None and cache.is_skipped(f):
            out[i] = (None, "skipped")
        elif cache is not None and (hit := cache.get(f)) is not None:
            out[i] = (hit, "no_face" if cache.is_fallback(f) else "ok")
        else:
            missing.append(i)
    bar = tqdm(total=len(missing), desc=f"embedding {side} ({model.spec.name})", unit="img", disable=not progress or not missing)
    with torch.inference_mode(), bar:
        for start in range(0, len(missing), batch_size):
            idx = missing[start : start + batch_size]
            z, st = model.embed([source.files[i] for i in idx], pool)
            for i, e, s in zip(idx, z, st):
                out[i] = (None if s == "skipped" else e, s)
                if cache is not None:
                    cache.put_skipped(source.files[i]) if s == "skipped" else cache.put(source.files[i], e, fallback=s == "no_face")
            bar.update(len(idx))
            if cache is not None and (start // batch_size) % 20 == 19:
                cache.save()  # an interrupted long run keeps what it computed
    return out, len(missing)


def embed_side(source: Source, model: Any, cache: ContentCache | None, batch_size: int, pool: ThreadPoolExecutor | None,
               progress: bool, side: str) -> Side:
    """Every item of `source` through `model` (ScoreModel-like), from the cache where it can."""
    if source.embeddings is not None:
        return Side(source.embeddings, ["ok"] * len(source))
    rows = list(range(len(source)))
    state = process_state() if world_size() > 1 else None
    if state is not None and state.num_processes > 1:
        with state.split_between_processes(rows) as mine:
            rows = list(mine)
        log.info(f"process {state.process_index + 1}/{state.num_processes}: {len(rows)} of the {len(source)} {side} items")
    images = [i for i in rows if i not in source.videos]
    done, computed = _images(source, images, model, cache, batch_size, pool, progress, side)
    clips, n = embed_clips({i: source.videos[i] for i in rows if i in source.videos}, model, cache, batch_size, pool,
                           progress, side)
    computed += n
    if state is not None and state.num_processes > 1:
        from accelerate.utils import gather_object

        shares = gather_object([(done, clips, computed)])  # one entry per process, in rank order
        done, clips, computed = {}, {}, 0
        for d, c, n in shares:
            done.update(d)
            clips.update(c)
            computed += n
        for rank in range(state.num_processes):  # one writer at a time: each merges the others' entries
            if cache is not None and rank == state.process_index:
                cache.save()
            state.wait_for_everyone()
    elif cache is not None:
        cache.save()
    rows_out: list[torch.Tensor | None] = [None] * len(source)
    status = ["ok"] * len(source)
    for i, (e, s) in done.items():
        rows_out[i], status[i] = e, s
    for i, clip in clips.items():
        mean = clip.mean_embedding()
        kept = bool(torch.isfinite(mean).all())
        rows_out[i] = mean if kept else None
        status[i] = "skipped" if not kept else "no_face" if any(s == "no_face" for s in clip.status) else "ok"
    dim = next((len(r) for r in rows_out if r is not None), getattr(model, "embedding_dim", None) or 1)
    z = torch.stack([r if r is not None else torch.full((dim,), float("nan")) for r in rows_out])
    return Side(z, status, clips, computed)
