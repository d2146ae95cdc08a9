"""Which device to run on, checked: a device that is not there is a clear error, not a crash mid-run."""
from __future__ import annotations

import torch

from .errors import StyleIDError


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """None → cuda when a GPU is there, else cpu. A named device must exist on this machine."""
    if device is None or device == "":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise StyleIDError(f"{device!r} is not a torch device (cpu, cuda, cuda:0 ...)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise StyleIDError(f"{device!r}: no CUDA GPU is available on this machine; use cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise StyleIDError(f"{device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise StyleIDError(f"{device!r}: Apple MPS is not available on this machine; use cpu")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise StyleIDError(f"{device!r}: unsupported device type {dev.type!r} (cpu, cuda or mps)")
    return dev
