"""`torch.load` for files from strangers: tensors and plain containers only, with an explicit allow-list
for anything else, and one line when the file is refused or damaged.

Never plain unpickling: a pickle can run code when loaded. The refusal message does not suggest
`weights_only=False`; it says to get a safetensors copy or a file with tensors only.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Iterable

import torch

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
