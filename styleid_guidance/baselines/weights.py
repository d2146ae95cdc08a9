"""Where the baselines' weights come from (open_clip tags, Hub models), failing fast when they cannot be had.

Before a download would start: weights already in the local cache are used with the Hub switched to offline
(no freshness check), and weights that are not there fail at once when the Hub's host does not answer
(`styleid_guidance.hub.resolve.reachable`).
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ..errors import StyleIDError
from ..hub.resolve import hub_endpoint, hub_offline, offline, reachable

PROBE_TIMEOUT_S = 2.0


class WeightsUnavailable(StyleIDError):
    """A model's weights are neither on disk nor downloadable now."""


def _hub_file_cached(repo: str, filenames: list[str]) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(repo, f), str) for f in filenames)


def open_clip_weights(model: str, pretrained: str | None, what: str) -> contextlib.AbstractContextManager:
    """A context to build open_clip `model`/`pretrained` in; WeightsUnavailable at once when the weights
    are not cached and cannot be downloaded now. Unknown tags and file paths are left to open_clip."""
    if not pretrained:
        return contextlib.nullcontext()
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model, pretrained)
    hub = cfg.get("hf_hub", "") if cfg else ""
    if not hub:
        return contextlib.nullcontext()
    repo, filename = os.path.split(hub)  # as open_clip splits it: "org/name/" means its default file name
    filename = filename or "open_clip_pytorch_model.bin"
    safe = {"open_clip_pytorch_model.bin": "open_clip_model.safetensors", "pytorch_model.bin": "model.safetensors"}
    candidates = [filename, safe.get(filename, filename.rsplit(".", 1)[0] + ".safetensors")]
    if _hub_file_cached(repo, candidates):
        return hub_offline()
    why = "downloads are off (HF_HUB_OFFLINE)" if offline() else None
    if why is None:
        ok, why = reachable(hub_endpoint())
        if ok:
            return contextlib.nullcontext()
    raise WeightsUnavailable(f"the {what} weights {model}/{pretrained} are not in the Hugging Face cache and cannot be "
                             f"downloaded now ({why}); run `hf download {repo}` where there is internet and copy "
                             f"~/.cache/huggingface here")


def offline_unless_reachable() -> contextlib.AbstractContextManager:
    """huggingface_hub offline (cache only, fast) for the block when the Hub does not answer."""
    if offline():
        return contextlib.nullcontext()
    ok, _ = reachable(hub_endpoint())
    return contextlib.nullcontext() if ok else hub_offline()


def hub_model(id_or_dir: str) -> contextlib.AbstractContextManager:
    """A context to resolve a Hub id (or a local folder) in; see offline_unless_reachable."""
    if Path(id_or_dir).expanduser().exists() or "/" not in str(id_or_dir):
        return contextlib.nullcontext()
    return offline_unless_reachable()
