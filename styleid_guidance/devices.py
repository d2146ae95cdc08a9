"""Which device to run on, checked: a device that is not there is a clear error, not a crash mid-run; and
which compute precision to use on it ("auto" = bf16 only where the hardware runs bf16 natively)."""
from __future__ import annotations

import contextlib
import os
import warnings

import torch

from .errors import Arg, StyleIDError
from .options import PRECISIONS


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """None → cuda when a GPU is there, else cpu. A named device must exist on this machine."""
    if device is None or device == "":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    given = Arg("device", str(device))
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise StyleIDError("{device} is not a torch device (cpu, cuda, cuda:0 ...)", param="device", device=given) from err
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise StyleIDError("{device}: no CUDA GPU is available on this machine; use {cpu}", param="device", device=given,
                               cpu=Arg("device", "cpu"))
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise StyleIDError("{device}: this machine has {n} CUDA device(s)", param="device", device=given,
                               n=torch.cuda.device_count())
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise StyleIDError("{device}: Apple MPS is not available on this machine; use {cpu}", param="device", device=given,
                           cpu=Arg("device", "cpu"))
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise StyleIDError("{device}: unsupported device type {kind!r} (cpu, cuda or mps)", param="device", device=given,
                           kind=dev.type)
    return dev


# ---------------------------------------------------------------------- compute precision
PRECISION_ENV = "STYLEID_PRECISION"  # what "auto" means when set (e.g. fp32 for reproducible CI runs)
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_warned: set[tuple[str, str]] = set()


def cpu_capabilities() -> dict:
    """The CPU's instruction-set flags as torch detects them (cpuinfo), e.g. {"amx_bf16": True, ...}.

    A function of its own so tests can pretend to be another CPU."""
    get = getattr(getattr(torch, "cpu", None), "get_capabilities", None)
    if get is None:  # torch without the query: assume nothing
        return {}
    try:
        return dict(get())
    except RuntimeError:
        return {}


def cpu_name() -> str:
    """The CPU's model name as benchmarks report it ("AMD EPYC 7B13"), from /proc/cpuinfo where there is one."""
    import platform

    try:
        for line in open("/proc/cpuinfo", encoding="utf-8", errors="replace"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_description(capabilities: dict | None = None) -> str:
    """What a benchmark figure states about the CPU: its model name and the instruction sets that change its speed
    ("Intel(R) Xeon(R) Processor @ 2.80GHz (avx2,avx512_f)"), as torch detects them."""
    caps = cpu_capabilities() if capabilities is None else capabilities
    flags = ",".join(f for f in ("avx2", "avx512_f", "avx512_bf16", "amx_bf16") if caps.get(f)) or "none"
    return f"{caps.get('cpu_name') or cpu_name()} ({flags})"


def cpu_bf16_native(capabilities: dict | None = None) -> bool:
    """True when this CPU has bf16 matrix instructions that oneDNN uses: AMX-BF16 or AVX512-BF16 on x86,
    the BF16 extension on arm64. Elsewhere torch *emulates* bf16 on the CPU, measured here at 7–60x slower
    than fp32, so "auto" must not pick it."""
    caps = cpu_capabilities() if capabilities is None else capabilities
    native = bool(caps.get("amx_bf16") or caps.get("avx512_bf16") or
                  (caps.get("architecture") in ("aarch64", "arm64") and caps.get("bf16")))
    return native


def bf16_native(device: str | torch.device) -> bool:
    """Does `device` run bf16 matrix multiplies in hardware (CUDA compute capability ≥ 8.0, or a CPU
    with AMX / AVX512-BF16)?"""
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            return False
        return torch.cuda.get_device_capability(dev)[0] >= 8
    if dev.type == "cpu":
        return cpu_bf16_native()
    return False  # MPS and others: keep fp32 unless asked


class Precision:
    """A resolved compute precision for one device: `dtype`, and `autocast()` for the model call.

    fp32 adds nothing (an enclosing autocast, e.g. accelerate's, still applies); bf16/fp16 run the
    matrix multiplies under `torch.autocast`, with weights kept in fp32 (exports stay fp32) and the
    caller reducing losses in fp32."""

    def __init__(self, name: str, device: torch.device) -> None:
        self.name, self.device = name, device

    @property
    def dtype(self) -> torch.dtype:
        return _DTYPES[self.name]

    @property
    def reduced(self) -> bool:
        return self.name != "fp32"

    def autocast(self) -> contextlib.AbstractContextManager:
        if not self.reduced:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def __repr__(self) -> str:
        return f"Precision({self.name!r}, {str(self.device)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Precision) and (self.name, self.device) == (other.name, other.device)

    def __hash__(self) -> int:
        return hash((self.name, self.device))


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise StyleIDError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def auto_precision(device: str | torch.device) -> str:
    """"bf16" where `device` runs it natively, else "fp32" (or what $STYLEID_PRECISION says)."""
    forced = os.environ.get(PRECISION_ENV, "").strip().lower()
    if forced and forced != "auto":
        if forced not in _DTYPES:
            raise StyleIDError(f"${PRECISION_ENV}={forced!r}: use one of fp32, bf16, fp16 (or auto)")
        return forced
    return "bf16" if bf16_native(device) else "fp32"


def resolve_precision(precision: str | Precision | None, device: str | torch.device) -> Precision:
    """"auto" | "fp32" | "bf16" | "fp16" (None = "fp32") → the Precision to run on `device`.

    An explicit bf16 where it is emulated, or fp16 on a CPU, is honoured but warned about once: it is
    correct, only slow."""
    dev = torch.device(device)
    if isinstance(precision, Precision):
        return precision if precision.device == dev else resolve_precision(precision.name, dev)
    name = check_precision(precision or "fp32")
    if name == "auto":
        name = auto_precision(dev)
    slow = (name == "bf16" and not bf16_native(dev)) or (name == "fp16" and dev.type == "cpu")
    if slow and (name, dev.type) not in _warned:
        _warned.add((name, dev.type))
        warnings.warn(f"precision {name} on {dev.type}: this device has no native {name} matrix instructions, so torch "
                      f"emulates them (slower than fp32); precision='auto' picks fp32 here", RuntimeWarning, stacklevel=2)
    return Precision(name, dev)
