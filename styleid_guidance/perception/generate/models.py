"""The StyleBench-S generators behind `styleid generate` (the paper's three, and FLUX.1 Kontext on request): how to load each, and the exact arguments
of one call (recorded in the manifest, so an image can be re-made from its record alone)."""
from __future__ import annotations

import collections
import contextlib
import hashlib
import inspect
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from ...errors import StyleIDError

# method name in the layout → (module, class)
STYLIZERS = {
    "ip_adapter": ("styleid_guidance.pipelines.ip_adapter", "IPAdapterStylizer"),
    "instantid": ("styleid_guidance.pipelines.instantid", "InstantIDStylizer"),
    "infiniteyou": ("styleid_guidance.pipelines.infiniteyou", "InfiniteYouStylizer"),
    "kontext": ("styleid_guidance.pipelines.kontext", "KontextStylizer"),  # `--methods kontext` (beyond the paper)
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def stylizer_class(method: str) -> type:
    import importlib

    module, name = STYLIZERS[method]
    return getattr(importlib.import_module(module), name)


def resolve_dtype(precision: str, device: torch.device, tiny: bool) -> torch.dtype:
    """--precision → dtype. auto: bf16 where the device runs it natively (CUDA with bf16), else fp32.
    The tiny stylizers are built in fp32 and stay there (their constructors take no dtype)."""
    if tiny:
        return torch.float32
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    return DTYPES[precision]


def model_ids(method: str, tiny: bool) -> dict[str, Any]:
    """What the images of `method` come from, for the manifest: the class and its Hub ids / defaults."""
    cls = stylizer_class(method)
    if tiny:
        return {"class": cls.__name__, "weights": "tiny-random (styleid_guidance.tiny, seeded)"}
    signature = inspect.signature(cls.from_pretrained)
    ids = {name: p.default for name, p in signature.parameters.items()
           if isinstance(p.default, str) and name not in ("detector",)}
    return {"class": cls.__name__, **ids}


def call_params(method: str, stylizer: Any, level: int, overrides: dict[str, Any]) -> dict[str, Any]:
    """Every argument one stylizer call gets besides face, prompt, level and seed: the paper's preset for
    the level, the stylizer's own defaults (size, steps of the tiny models), then the user's overrides.
    Passed explicitly, so the record is what ran, not a guess of what the defaults were."""
    from ...pipelines import presets

    if method == "ip_adapter":
        params = {**presets.ip_adapter_preset(level), **stylizer.defaults}
    elif method == "instantid":
        params = {**presets.instantid_preset(level), "height": stylizer.size, "width": stylizer.size}
    elif method == "kontext":
        # the output keeps each photo's aspect ratio at stylizer.size² (so no height/width here unless
        # --image-size asks); the instruction is presets.kontext_instruction(prompt, level), derived from the record
        params = {**presets.kontext_preset(level), **stylizer.call_defaults}
    else:
        params = {**presets.infiniteyou_preset(level), "height": stylizer.size, "width": stylizer.size,
                  **stylizer.call_defaults}
    return {**params, **overrides}


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

