"""Resolving a Hub id or local folder to a folder on disk, with a plain message when it cannot be had."""
from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import StyleIDError

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
DEFAULT_PATTERNS = ("*.json", "*.safetensors", "*.txt", "*.model")


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

        return Path(snapshot_download(text, allow_patterns=list(allow_patterns)))
    except Exception as err:  # offline, missing repo, gated, network: all end the same way for the user
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
        why = "offline mode is on and they are not in the local cache" if offline else f"{type(err).__name__}"
        raise _error(f"the {kind} weights {text!r} are not available ({why}); download them where there is internet "
                     f"(`hf download {text}`) or give the path of a local copy", flag) from None


def _error(message: str, flag: str | None) -> StyleIDError:
    return StyleIDError(message, cli=f"{flag}: {message}" if flag else None)
