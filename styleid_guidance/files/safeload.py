"""Reading model files from strangers: JSON, safetensors (single or sharded, the Hub's layout) and `torch.load`
(tensors and plain containers only, with an explicit allow-list for anything else); one line naming the file
when it is refused or damaged.

Never plain unpickling: a pickle can run code when loaded. The refusal message does not suggest
`weights_only=False`; it says to get a safetensors copy or a file with tensors only.
"""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any, Iterable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..errors import StyleIDError


def load_weights_only(path: str | os.PathLike, what: str = "checkpoint", allow: Iterable[Any] = ()) -> Any:
    """torch.load(path, weights_only=True) on CPU, with `allow` (classes / functions, or (obj, "name")
    pairs) as the only extra globals the unpickler may build."""
    path = Path(path)
    if not path.is_file():
        raise StyleIDError(f"{path}: {what} not found")
    try:
        with torch.serialization.safe_globals(list(allow)):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "GLOBAL" in str(err):  # the weights-only unpickler met a class or function that is not allowed
            raise StyleIDError(f"{path}: refused: the {what} holds pickled objects other than tensors, which could run "
                               "code when loaded; use a safetensors copy or a file of tensors only") from None
        raise StyleIDError(f"{path}: not a loadable {what} (damaged or not a torch file)") from None
    except Exception as err:  # torch.load on a damaged file raises nearly anything (zip, EOF, index, unicode...)
        first = str(err).strip().splitlines()[0][:120] if str(err).strip() else ""
        raise StyleIDError(f"{path}: not a loadable {what} (damaged or not a torch file: {type(err).__name__}"
                           f"{': ' + first if first else ''})") from None


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise StyleIDError(f"{path}: not valid JSON ({type(err).__name__}: {str(err).splitlines()[0][:120]}); fix or replace the file") from None


def load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise StyleIDError(f"{path}: not a readable safetensors file ({str(err).splitlines()[0][:120]}); "
                           "it may be truncated: download or save it again") from None


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """model.safetensors, its sharded index, or a legacy pytorch_model.bin (tensors only)."""
    single, index, legacy = (folder / name for name in WEIGHT_FILES)
    if single.exists():
        return load_safetensors(single)
    if index.exists():
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise StyleIDError(f"{index}: no 'weight_map'; is it a safetensors index?")
        state: dict[str, torch.Tensor] = {}
        for shard in sorted(set(weight_map.values())):
            if not (folder / shard).is_file():
                raise StyleIDError(f"{folder / shard}: shard listed in {index.name} is missing")
            state.update(load_safetensors(folder / shard))
        return state
    if legacy.exists():
        state = load_weights_only(legacy, "PyTorch checkpoint")
        if not isinstance(state, dict):
            raise StyleIDError(f"{legacy}: not a state dict of tensors; use a model.safetensors copy")
        return state
    raise StyleIDError(f"{folder}: no model.safetensors (or pytorch_model.bin) found")
