"""Where the models' weights come from, and failing fast when they cannot be had.

huggingface_hub retries an unreachable host for about a minute (with a warning per try) before it
gives up; for a user without internet that is a minute of noise before one sentence. So, before a
download would start: weights already in the local cache are used with the Hub switched to offline
(no freshness check), and weights that are not there fail at once when the Hub's host does not answer
within a couple of seconds.
"""
from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

from ..errors import StyleIDError

PROBE_TIMEOUT_S = 2.0


class WeightsUnavailable(StyleIDError):
    """A model's weights are neither on disk nor downloadable now."""


def offline_env() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "STYLEID_OFFLINE"))


def reachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> tuple[bool, str]:
    """(can a TCP connection to the URL's host be opened, why not)."""
    parsed = urlparse(url)
    host, port = parsed.hostname or "", parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, ""
    except Exception as err:  # DNS failure, refused, timeout, a sandbox that forbids sockets: all "no"
        return False, f"{host} unreachable: {type(err).__name__}"


def hub_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """huggingface_hub in offline mode for the block (it reads this flag on every call)."""
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


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
    why = "downloads are off (HF_HUB_OFFLINE)" if offline_env() else None
    if why is None:
        ok, why = reachable(hub_endpoint())
        if ok:
            return contextlib.nullcontext()
    raise WeightsUnavailable(f"the {what} weights {model}/{pretrained} are not in the Hugging Face cache and cannot be "
                             f"downloaded now ({why}); run `hf download {repo}` where there is internet and copy "
                             f"~/.cache/huggingface here")


def offline_unless_reachable() -> contextlib.AbstractContextManager:
    """huggingface_hub offline (cache only, fast) for the block when the Hub does not answer."""
    if offline_env():
        return contextlib.nullcontext()
    ok, _ = reachable(hub_endpoint())
    return contextlib.nullcontext() if ok else hub_offline()


def hub_model(id_or_dir: str) -> contextlib.AbstractContextManager:
    """A context to resolve a Hub id (or a local folder) in; see offline_unless_reachable."""
    if Path(id_or_dir).expanduser().exists() or "/" not in str(id_or_dir):
        return contextlib.nullcontext()
    return offline_unless_reachable()
