"""Resolving a Hub id or local folder to a folder on disk, with a plain message when it cannot be had."""
from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import StyleIDError

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
DEFAULT_PATTERNS = ("*.json", "*.safetensors", "*.txt", "*.model")
# The loaders read safetensors first and fall back to a legacy pytorch_model.bin (tensors only, weights_only).
LEGACY_WEIGHTS = ("pytorch_model.bin", "*/pytorch_model.bin")


def resolve_model_dir(
    id_or_dir: str | os.PathLike,
    kind: str = "model",
    allow_patterns: tuple[str, ...] = DEFAULT_PATTERNS,
    flag: str | None = None,
) -> Path:
    """Return a local folder for `id_or_dir`: the folder itself, or a Hub snapshot (downloaded on first use).

    Errors speak to a Python caller; `flag` (the command-line option the value came from, if any)
    gives them a command-line phrasing too (`StyleIDError.cli`)."""
    path = Path(id_or_dir).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise _error(f"{path}: is a file; expected a model folder or a Hugging Face Hub id", flag)
    text = str(id_or_dir)
    if not _HUB_ID.match(text) or text.startswith((".", "/", "~")):
        raise _error(f"{text}: no such folder (and not a Hugging Face Hub id); check the path", flag)
    try:
        from huggingface_hub import snapshot_download

        patterns = _readable_patterns(text, tuple(allow_patterns))
        # STYLEID_OFFLINE means no download attempt either, as HF_HUB_OFFLINE does for huggingface_hub
        return Path(snapshot_download(text, allow_patterns=list(patterns), local_files_only=_offline()))
    except Exception as err:  # offline, missing repo, gated, network: all end the same way for the user
        offline = _offline()
        why = "offline mode is on and they are not in the local cache" if offline else f"{type(err).__name__}"
        raise _error(f"the {kind} weights {text!r} are not available ({why}); download them where there is internet "
                     f"(`hf download {text}`) or give the path of a local copy", flag) from None


def _offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "STYLEID_OFFLINE"))


def _readable_patterns(repo: str, patterns: tuple[str, ...]) -> tuple[str, ...]:
    """The default patterns, plus the legacy pytorch_model.bin when the repo has no safetensors weights (so a
    .bin-only repo downloads what the loader can read, and a repo with both does not download both). Explicit
    patterns are the caller's business; offline, the cache holds whatever was fetched before."""
    if patterns != DEFAULT_PATTERNS or _offline():
        return patterns
    from huggingface_hub import list_repo_files

    try:
        files = list_repo_files(repo)
    except Exception:  # the download below fails the same way, with the message users get
        return patterns
    if any(f.endswith(".safetensors") for f in files):
        return patterns
    return patterns + LEGACY_WEIGHTS


def _error(message: str, flag: str | None) -> StyleIDError:
    return StyleIDError(message, cli=f"{flag}: {message}" if flag else None)
