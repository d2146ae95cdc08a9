"""Resolving a Hub id or local folder to a folder on disk, with a plain message when it cannot be had.

Also the one place that knows whether downloads may happen: `offline()` (HF_HUB_OFFLINE / STYLEID_OFFLINE) and
`reachable(url)`. huggingface_hub retries an unreachable host for about a minute (a warning per try) before it
gives up; for a user without internet that is a minute of noise before one sentence, so weights that are not
cached fail at once when the Hub's host does not answer within a couple of seconds.
"""
from __future__ import annotations

import contextlib
import http.client
import os
import re
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

from ..errors import StyleIDError, reason

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
DEFAULT_PATTERNS = ("*.json", "*.safetensors", "*.txt", "*.model")
# The loaders read safetensors first and fall back to a legacy pytorch_model.bin (tensors only, weights_only).
LEGACY_WEIGHTS = ("pytorch_model.bin", "*/pytorch_model.bin")
# what huggingface_hub raises for a repo it cannot get: HfHubHTTPError and LocalEntryNotFoundError are OSErrors
# (connection failures reach us as the latter), HFValidationError a ValueError; anything else is a bug to show
HUB_ERRORS = (OSError, ValueError)


def resolve_model_dir(
    id_or_dir: str | os.PathLike,
    kind: str = "model",
    allow_patterns: tuple[str, ...] = DEFAULT_PATTERNS,
    flag: str | None = None,
) -> Path:
    """Return a local folder for `id_or_dir`: the folder itself, or a Hub snapshot (downloaded on first use).

    Errors speak to a Python caller; `flag` (the command-line option the value came from, if any) is recorded
    as the error's `option`, which its command-line wording names (`StyleIDError.for_cli`)."""
    path = Path(id_or_dir).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise _error(f"{path}: is a file; expected a model folder or a Hugging Face Hub id", flag)
    text = str(id_or_dir)
    if not _HUB_ID.match(text) or text.startswith((".", "/", "~")):
        raise _error(f"{text}: no such folder (and not a Hugging Face Hub id); check the path", flag)
    from huggingface_hub import snapshot_download

    # an unanswered Hub means the cache or nothing, decided in seconds rather than after a minute of retries
    online, why = (False, "offline mode is on") if offline() else reachable(hub_endpoint())
    try:
        if online:
            patterns = _readable_patterns(text, tuple(allow_patterns))
            return Path(snapshot_download(text, allow_patterns=list(patterns)))
        return Path(snapshot_download(text, allow_patterns=list(allow_patterns), local_files_only=True))
    except HUB_ERRORS as err:  # not cached, missing repo, gated, network: all end the same way for the user
        why = f"{why} and they are not in the local cache" if not online else reason(err)[:200]
        raise _error(f"the {kind} weights {text!r} are not available ({why}); download them where there is internet "
                     f"(`hf download {text}`) or give the path of a local copy", flag) from err


def offline() -> bool:
    """Downloads are off: HF_HUB_OFFLINE (huggingface_hub's own switch) or STYLEID_OFFLINE (also facexlib's and
    insightface's downloads, which do not read the Hub's)."""
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in ("HF_HUB_OFFLINE", "STYLEID_OFFLINE"))


def facexlib_weights_dir(model_rootpath: str | os.PathLike | None = None) -> Path:
    """Where facexlib's weights (RetinaFace, ArcFace IR-SE50) are read from and downloaded to: `model_rootpath`,
    else facexlib's own `weights/` folder, as facexlib itself does."""
    if model_rootpath:
        return Path(model_rootpath)
    import facexlib

    return Path(facexlib.__file__).parent / "weights"


def hub_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


_answers: dict[str, tuple[bool, str]] = {}  # host → (reachable, why not), asked once per process


def reachable(url: str, timeout: float = 2.0) -> tuple[bool, str]:
    """(does the URL's server answer, why not). Asked once per process and host, in a daemon thread: a stuck
    DNS lookup or proxy must not hang the caller, so no answer within `timeout` counts as unreachable."""
    if offline():
        return False, "offline mode is on (HF_HUB_OFFLINE / STYLEID_OFFLINE)"
    host = re.sub(r"^(\w+://[^/]+).*$", r"\1", url)
    if host in _answers:
        return _answers[host]
    result: dict[str, str] = {}

    def probe() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout)
            result["ok"] = "1"
        except urllib.error.HTTPError:
            result["ok"] = "1"  # the server answered (401/404 still means the network works)
        except (OSError, ValueError, http.client.HTTPException) as err:  # DNS, refused, TLS, timeout, no sockets, a
            result["err"] = type(err).__name__  # malformed answer: all "cannot download now"

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    name = re.sub(r"^\w+://", "", host)
    _answers[host] = (True, "") if result.get("ok") else (False, f"{name} cannot be reached "
                                                                 f"({result.get('err', 'no answer in time')})")
    return _answers[host]


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


def _readable_patterns(repo: str, patterns: tuple[str, ...]) -> tuple[str, ...]:
    """The default patterns, plus the legacy pytorch_model.bin when the repo has no safetensors weights (so a
    .bin-only repo downloads what the loader can read, and a repo with both does not download both). Explicit
    patterns are the caller's business; offline, the cache holds whatever was fetched before."""
    if patterns != DEFAULT_PATTERNS or offline():
        return patterns
    from huggingface_hub import list_repo_files

    try:
        files = list_repo_files(repo)
    except HUB_ERRORS:  # the download below fails the same way, with the message users get
        return patterns
    if any(f.endswith(".safetensors") for f in files):
        return patterns
    return patterns + LEGACY_WEIGHTS


def _error(message: str, flag: str | None) -> StyleIDError:
    err = StyleIDError(message, param="id_or_dir")
    err.option = flag  # the command line's wording prefixes the flag (as `cli.parsing.for_option` does)
    return err
