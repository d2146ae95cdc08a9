"""Stylisation pipelines (IP-Adapter, InstantID, InfiniteYou, FLUX.1 Kontext; Wan 2.x image-to-video for clips) with
StyleID identity guidance, and
`STYLIZERS`, the one registry of them.

    from styleid_guidance.pipelines import STYLIZERS
    entry = STYLIZERS["instantid"]                  # name → StylizerEntry: class, presets, model ids, output kind
    stylizer = entry.load().tiny()                  # or .from_pretrained(device="cuda")
    image = stylizer(face, entry.prompts["pixar"], strength_level=3, seed=0)

Everything that offers a choice of stylizers reads `STYLIZERS` and keeps no list of its own: `styleid generate
--methods` and its manifest's model record, the demo's Stylize columns and weight checks, the benchmarks and the
examples. A new stylizer is one `register_stylizer(...)` call; `tests/pipelines/test_stylizer_registry.py` then runs the
shared checks on it.

Submodules are imported on demand (`entry.load()`, or `from styleid_guidance.pipelines.ip_adapter import
IPAdapterStylizer`): each pulls in diffusers and its own model code, which a caller of another pipeline should not
pay for (loading InfiniteYou's FLUX pipeline does not load InstantID's SDXL one). Importing this package imports
only `presets` (no torch).

    ip_adapter / instantid / infiniteyou   the three stylizers of the paper and their pipelines
    kontext                                FLUX.1 Kontext [dev] instruction editing (diffusers' own FluxKontextPipeline)
    wan_video                              a video stylizer: Wan 2.x image-to-video from the photo (output "video")
    face_embeddings                        the face-recognition embeddings the adapters are conditioned on
    keypoints                              the 5-keypoint control image
    resampler                              the identity Resampler (official key layout ↔ diffusers)
    adapter_files                          reading the official adapter files; loader errors in one line
    quantize                               int8 weights for the FLUX pipelines (optimum-quanto)
    presets                                the paper's seven strength levels, style prompts (Kontext: as instructions) and DDIM set-up,
                                           and the weights each built-in stylizer loads by default

The tiny random stand-ins live in `styleid_guidance.tiny` and are reached through each stylizer's `.tiny()`.
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping, Protocol, runtime_checkable

from styleid_guidance.errors import StyleIDError

from . import presets

__all__ = ["OUTPUT_KINDS", "STYLIZERS", "Stylizer", "StylizerEntry", "register_stylizer", "stylizer_names"]

OUTPUT_KINDS = ("image", "video")
# The base-model families, lightest first: how much GPU memory a stylizer needs (the demo's real-weights profiles
# run the families up to theirs). A family not listed here counts as the heaviest.
BASE_FAMILIES = ("sd15", "sdxl", "flux")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # a name is also a folder (`generate`'s OUT/{method}/)


@runtime_checkable
class Stylizer(Protocol):
    """What every registered stylizer class implements (the four built-in ones do).

    `__call__` returns a PIL image (output "image") or a list of PIL frames (output "video"). `overrides` go to
    the pipeline and win over the preset, e.g. `num_inference_steps=`, `height=`/`width=`, and
    `callback_on_step_end=` (a diffusers step callback, run after the identity guidance when both are given).
    `identity_guidance` is an `IdentityGuidanceCallback` or None."""

    pipe: Any
    face_embedder: Any  # the face front end; `generate` points its `detector` at the run's detector
    call_defaults: dict[str, Any]  # what this instance adds to every call on top of the preset (tiny: size, steps)

    @classmethod
    def tiny(cls, device: str = "cpu") -> "Stylizer":
        """Random tiny models: offline, seconds on a CPU."""

    @classmethod
    def from_pretrained(cls, *, device: str | None = None, torch_dtype: Any = None, detector: str | None = None,
                        **weights: Any) -> "Stylizer":
        """Real weights; `weights` are the entry's `models` keywords (Hub ids or local folders)."""

    def call_settings(self, strength_level: int, face: Any = None) -> dict[str, Any]:
        """Every pipeline argument a call at this level gets besides face, prompt, seed and guidance: the level's
        preset, then `call_defaults`; with `face`, also the output height/width where they follow the photo."""

    def __call__(self, face: Any, prompt: str, strength_level: int = 4, identity_guidance: Any = None, seed: int = 0,
                 **overrides: Any) -> Any:
        """One stylised image (or video) of `face`."""


@dataclass(frozen=True)
class StylizerEntry:
    """One registered stylizer. `target` names the class as "module:Class" (imported on first `load()`, so the
    registry stays cheap to import) or is the class itself. `models`: the `from_pretrained` keywords that name the
    weights it loads and their default Hub ids / files, declared explicitly (the built-in ones and their classes'
    defaults: `presets.DEFAULT_MODELS`); `generate` records them with every image, so they also decide whether an old data folder resumes.
    `preset`: strength level 1..7 → pipeline arguments (the paper's schedule). `prompts`: style name → the prompt
    the stylizer is called with."""

    name: str
    target: str | type
    label: str
    models: Mapping[str, str]
    preset: Callable[[int], dict[str, Any]]
    prompts: Mapping[str, str] = field(default_factory=lambda: MappingProxyType(presets.STYLE_PROMPTS))
    output: str = "image"
    paper: bool = False  # one of the paper's StyleBench-S generators: what `generate` runs by default
    base: str = "flux"  # base-model family (BASE_FAMILIES): the GPU memory it needs
    description: str = ""

    @property
    def class_name(self) -> str:
        return self.target.rpartition(":")[2] if isinstance(self.target, str) else self.target.__name__

    def load(self) -> type:
        """The stylizer class (imports its module now)."""
        if not isinstance(self.target, str):
            return self.target
        module, _, name = self.target.partition(":")
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as err:
            text = str(err).strip()
            reason = f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__
            raise StyleIDError(f"cannot import {module}.{name} ({reason})") from err

    def presets(self, style: str, level: int) -> dict[str, Any]:
        """The call arguments for (style, level): `prompt` (the style's) and the level's preset."""
        if style not in self.prompts:
            raise StyleIDError(f"{self.name}: style {style!r} is not one of {', '.join(self.prompts)}")
        return {"prompt": self.prompts[style], **self.preset(level)}


STYLIZERS: dict[str, StylizerEntry] = {}


def stylizer_names(output: str | None = None) -> tuple[str, ...]:
    """The registered names in registration order; with `output` ("image" / "video"), those of that kind only.
    Callers read this on each use, so a stylizer registered after they were imported is included."""
    return tuple(name for name, entry in STYLIZERS.items() if output is None or entry.output == output)


def register_stylizer(name: str, target: str | type, *, label: str, models: Mapping[str, str],
                      preset: Callable[[int], dict[str, Any]], prompts: Mapping[str, str] | None = None,
                      output: str = "image", paper: bool = False, base: str = "flux", description: str = "",
                      replace: bool = False) -> StylizerEntry:
    """Add a stylizer to `STYLIZERS` (and so to `generate --methods`, the demo and the shared tests).

        register_stylizer("my_method", "my_package.stylizer:MyStylizer", label="My method",
                          models={"base_model": "me/my-model"}, preset=my_preset)

    The class must implement `Stylizer`. Returns the entry; `replace=True` replaces an entry of the same name."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise StyleIDError(f"stylizer name {name!r} must be letters, digits, '.', '_' or '-' (it names a folder)")
    if name in STYLIZERS and not replace:
        raise StyleIDError(f"a stylizer named {name!r} is already registered; pick another name or pass replace=True")
    if isinstance(target, str) and not re.match(r"^[\w.]+:\w+$", target):
        raise StyleIDError(f"stylizer {name!r}: target must be 'module:Class' or the class itself, got {target!r}")
    if output not in OUTPUT_KINDS:
        raise StyleIDError(f"stylizer {name!r}: output must be one of {', '.join(OUTPUT_KINDS)}, got {output!r}")
    if not models or not all(isinstance(k, str) and isinstance(v, str) and v for k, v in models.items()):
        raise StyleIDError(f"stylizer {name!r}: models must map from_pretrained keywords to the Hub ids / files they load")
    if not callable(preset):
        raise StyleIDError(f"stylizer {name!r}: preset must be a function of the strength level")
    entry = StylizerEntry(name, target, label, MappingProxyType(dict(models)), preset,
                          MappingProxyType(dict(presets.STYLE_PROMPTS if prompts is None else prompts)),
                          output, paper, base, description)
    STYLIZERS[name] = entry
    return entry


# The built-in four; their weights: presets.DEFAULT_MODELS.
register_stylizer("ip_adapter", "styleid_guidance.pipelines.ip_adapter:IPAdapterStylizer", label="IP-Adapter",
                  models=presets.DEFAULT_MODELS["ip_adapter"], preset=presets.ip_adapter_preset, paper=True, base="sd15",
                  description="IP-Adapter FaceID-Plus v2 on SD1.5")
register_stylizer("instantid", "styleid_guidance.pipelines.instantid:InstantIDStylizer", label="InstantID",
                  models=presets.DEFAULT_MODELS["instantid"], preset=presets.instantid_preset, paper=True, base="sdxl",
                  description="InstantID on SDXL")
register_stylizer("infiniteyou", "styleid_guidance.pipelines.infiniteyou:InfiniteYouStylizer", label="InfiniteYou",
                  models=presets.DEFAULT_MODELS["infiniteyou"], preset=presets.infiniteyou_preset, paper=True, base="flux",
                  description="InfiniteYou on FLUX.1-dev")
register_stylizer("kontext", "styleid_guidance.pipelines.kontext:KontextStylizer", label="FLUX.1 Kontext",
                  models=presets.DEFAULT_MODELS["kontext"], preset=presets.kontext_preset, base="flux",
                  description="FLUX.1 Kontext [dev] instruction editing")
register_stylizer("wan_video", "styleid_guidance.pipelines.wan_video:WanVideoStylizer", label="Wan 2.x image-to-video",
                  models=presets.DEFAULT_MODELS["wan_video"], preset=presets.wan_video_preset, output="video", base="wan",
                  description="Wan 2.x image-to-video: the photo as first frame, animated into the style")
