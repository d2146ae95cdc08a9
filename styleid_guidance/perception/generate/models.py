"""The StyleBench-S generators behind `styleid generate` (every image stylizer in `styleid_guidance.pipelines.STYLIZERS`;
the paper's three by default): how to load each, what the manifest records about its models, and the exact
arguments of one call (recorded too, so an image can be re-made from its record alone)."""
from __future__ import annotations

import collections
import contextlib
import hashlib
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from ...devices import resolve_precision
from ...errors import StyleIDError
from ...pipelines import STYLIZERS

TINY_WEIGHTS = "tiny-random (styleid_guidance.tiny, seeded)"


def stylizer_class(method: str) -> type:
    return STYLIZERS[method].load()


def resolve_dtype(precision: str, device: torch.device, tiny: bool) -> torch.dtype:
    """--precision → the pipelines' dtype, by the one rule of `devices.resolve_precision` (auto: bf16 where the
    device runs it natively, else fp32). The tiny stylizers are built in fp32 and stay there (their constructors
    take no dtype)."""
    if tiny:
        return torch.float32
    return resolve_precision(precision, device).dtype


def model_ids(method: str, tiny: bool) -> dict[str, Any]:
    """What the images of `method` come from, for the manifest (and for resuming: a record asking for other
    models stops the run): the class name and the model ids its registry entry declares. The same record
    earlier releases wrote from `from_pretrained`'s keyword defaults, so their data folders still resume."""
    entry = STYLIZERS[method]
    if tiny:
        return {"class": entry.class_name, "weights": TINY_WEIGHTS}
    return {"class": entry.class_name, **entry.models}


def call_params(stylizer: Any, level: int, overrides: dict[str, Any]) -> dict[str, Any]:
    """Every argument one stylizer call gets besides face, prompt, level and seed: its `call_settings` (the
    preset for the level, then its own defaults: size, steps of the tiny models), then the user's overrides.
    Passed explicitly, so the record is what ran, not a guess of what the defaults were. Where the output
    size follows the photo (Kontext) it is not recorded unless --image-size asks for one."""
    return {**stylizer.call_settings(level), **overrides}


class CachedFaces:
    """Wraps a stylizer's face embedder: one source photo's face is detected and embedded once, not once per
    style and level (detection is the slow part of a tiny run, and pure: same pixels, same face)."""

    def __init__(self, embedder: Any, size: int = 4) -> None:
        self.inner = embedder
        self._cache: collections.OrderedDict[str, Any] = collections.OrderedDict()
        self._size = size

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __call__(self, image: Any, name: str = "face image") -> Any:
        import numpy as np

        arr = np.asarray(image)
        key = hashlib.sha256(repr(arr.shape).encode() + arr.tobytes()).hexdigest()
        if key not in self._cache:
            self._cache[key] = self.inner(image, name=name)
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return self._cache[key]


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """diffusers / transformers talk a lot while building pipelines (harmless notes about tiny configs, LoRA
    prefixes); during a long run they would bury the progress bar. Errors still show."""
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    levels = dlog.get_verbosity(), tlog.get_verbosity()
    dlog.set_verbosity_error()
    tlog.set_verbosity_error()
    try:
        yield
    finally:
        dlog.set_verbosity(levels[0])
        tlog.set_verbosity(levels[1])


@dataclass
class Loader:
    """Builds stylizers on demand, one method at a time (each real one holds many GB)."""

    tiny: bool
    device: torch.device
    dtype: torch.dtype
    detector: str
    model_rootpath: str | None = None
    _current: tuple[str, Any] | None = None

    def get(self, method: str) -> Any:
        if self._current is not None and self._current[0] == method:
            return self._current[1]
        self._current = None  # let the previous pipeline go before the next one is loaded
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        cls = stylizer_class(method)
        try:
            with _quiet_loading():
                stylizer = cls.tiny(self.device) if self.tiny else cls.from_pretrained(
                    device=str(self.device), torch_dtype=self.dtype, detector=self.detector)
        except StyleIDError:
            raise
        except (OSError, ValueError, RuntimeError) as err:
            raise StyleIDError(f"{method}: could not load the models ({type(err).__name__}: {str(err).splitlines()[0][:160]})") from None
        # one detector for the source check and every stylizer, as the faces flags say
        stylizer.face_embedder.detector = self.detector
        if self.model_rootpath is not None:
            stylizer.face_embedder.model_rootpath = self.model_rootpath
        stylizer.face_embedder = CachedFaces(stylizer.face_embedder)
        self._current = (method, stylizer)
        return stylizer

