"""Reading the official adapter files (InstantID `ip-adapter.bin`, InfiniteYou `image_proj_model.bin`,
IP-Adapter checkpoints) and turning loader failures into one plain line."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, TypeVar


from styleid_guidance.errors import StyleIDError, reason
from styleid_guidance.files.safeload import load_weights_only

T = TypeVar("T")


def load_state_dict_file(path_or_dict: str | os.PathLike | dict, what: str) -> dict:
    """A nested state dict {"image_proj": {...}, "ip_adapter": {...}} from a .bin (torch, weights only) or a flat
    .safetensors file ("image_proj.latents" → ["image_proj"]["latents"]); a dict passes through."""
    if isinstance(path_or_dict, dict):
        return path_or_dict
    path = Path(path_or_dict)
    if not path.is_file():
        raise StyleIDError(f"{path}: {what} not found; pass the file from the official release (or its folder)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            flat = load_file(str(path))
            nested: dict[str, dict] = {}
            for k, v in flat.items():  # "image_proj.latents" → {"image_proj": {"latents": ...}}
                top, _, rest = k.partition(".")
                nested.setdefault(top, {})[rest] = v
            return nested
        return load_weights_only(path, what)
    except StyleIDError:
        raise
    except Exception as err:
        raise StyleIDError(f"{path}: cannot read {what} ({reason(err)}); download it again") from None


def load_or_explain(load: Callable[[], T], what: str, source: str | os.PathLike, argument: str) -> T:
    """Run a diffusers/transformers loader; turn "not there" (offline, missing, gated) into one plain line that
    names the `argument` (the Python parameter) that gave `source`."""
    try:
        return load()
    except (OSError, ValueError) as err:  # EnvironmentError / HF errors (LocalEntryNotFound, RepositoryNotFound)
        if isinstance(err, StyleIDError):
            raise
        raise StyleIDError(f"{what} {str(source)!r} could not be loaded ({reason(err)}); check {argument}: a local folder, "
                           f"or a Hub id that is downloaded (offline mode needs it in the cache)") from None
