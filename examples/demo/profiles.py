"""The demo's model registry: everything the tabs run on, built lazily, failures remembered and shown.

A framework whose module does not import or whose weights cannot be had is shown as unavailable with
the reason; the rest of the page keeps working. Which weights and profiles exist: `weight_sources.py`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from PIL import Image

from styleid_guidance.errors import NoFaceError, StyleIDError
from styleid_guidance.options import OFFLINE_DETECTOR, detector_for
from styleid_guidance.pipelines import STYLIZERS

from .weight_sources import (DEFAULT_WEIGHTS, DETECT_SIDE, IDENTITY_LABELS, IDENTITY_MODELS, PROFILES, REAL_JOJOGAN_ITERS,
                             REAL_PROFILES, TINY_CALL_OVERRIDES, TINY_GUIDANCE, TINY_JOJOGAN_ITERS, _coerce,
                             arcface_reason, framework_label, frameworks, profile_frameworks, retinaface_reason,
                             weights_reason)

log = logging.getLogger("styleid.demo")

# ----------------------------------------------------------------------------------------- the registry


@dataclass
class Availability:
    key: str
    label: str
    reason: str | None  # None = usable (real weights may still download on first use)
    note: str | None = None  # usable, with a caveat the page should show (e.g. a fallback taken)


class Models:
    """Everything the tabs run on, built lazily on first use and kept; a failed build is remembered and
    reported as "unavailable: reason" from then on instead of being retried on every click."""

    def __init__(self, profile: str, device: str | None = None, weights: dict[str, str] | None = None,
                 detector: str | None = None, model_rootpath: str | None = None):
        from styleid_guidance.devices import resolve_device

        if profile not in PROFILES or profile == "auto":
            raise StyleIDError(f"profile must be one of {', '.join(PROFILES[1:])}, got {profile!r}")
        self.profile = profile
        self.tiny = profile == "tiny"
        self.device = resolve_device(device)  # a device that is not there fails here, not on every click
        self.weights = {**DEFAULT_WEIGHTS, **(weights or {})}
        self.model_rootpath = model_rootpath
        self.notes: list[str] = []  # things the page should say (fallbacks taken while running)
        self.detector = detector_for(detector, self.tiny)
        self.detector_note: str | None = None  # why the detector is not the one asked for
        if self.detector != OFFLINE_DETECTOR and not self.tiny:  # RetinaFace: its weights may be missing
            why = retinaface_reason(model_rootpath)
            if why:  # MTCNN ships its weights: say up front what will find the faces
                self._use_mtcnn(why)
        self.call_overrides = dict(TINY_CALL_OVERRIDES) if self.tiny else {}
        self.guidance_kwargs = dict(TINY_GUIDANCE) if self.tiny else {}
        self.jojogan_iters = TINY_JOJOGAN_ITERS if self.tiny else REAL_JOJOGAN_ITERS
        self._built: dict[str, Any] = {}
        self._failed: dict[str, str] = {}
        self._faces: OrderedDict[tuple, list] = OrderedDict()
        self._lock = threading.RLock()

    # -- lazy building --------------------------------------------------------------------------------

    def _get(self, key: str, label: str, build: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._failed:
                raise StyleIDError(f"{label} is unavailable: {self._failed[key]}")
            if key not in self._built:
                try:
                    self._built[key] = build()
                except (StyleIDError, FileNotFoundError) as err:
                    self._failed[key] = _first_line(err)
                    raise StyleIDError(f"{label} is unavailable: {self._failed[key]}") from None
                except Exception as err:  # a broken module or an out-of-memory load must not take the page down
                    log.exception("building %s failed", label)
                    self._failed[key] = f"{type(err).__name__}: {_first_line(err)}"
                    raise StyleIDError(f"{label} is unavailable: {self._failed[key]}") from None
            return self._built[key]

    def is_built(self, key: str) -> bool:
        return key in self._built

    # -- identity models ------------------------------------------------------------------------------

    def identity_module(self, name: str) -> torch.nn.Module:
        if name not in IDENTITY_MODELS:
            raise StyleIDError(f"identity model must be one of {', '.join(IDENTITY_MODELS)}, got {name!r}")
        return self._get(f"id:{name}", IDENTITY_LABELS[name], lambda: self._build_identity(name))

    def _build_identity(self, name: str) -> torch.nn.Module:
        from styleid_guidance.identity_losses import build_identity_loss

        if not self.tiny:
            return build_identity_loss(name, model=self.weights.get(name), device=self.device,
                                       model_rootpath=self.model_rootpath).model
        from styleid_guidance.baselines.arcface import build_arcface_backbone
        from styleid_guidance.encoder.model import StyleIDEncoder

        with torch.random.fork_rng(devices=[]):  # the same tiny models on every launch
            torch.manual_seed({"styleid": 0, "clip": 1, "arcface": 2}[name])
            if name == "arcface":
                module = build_arcface_backbone()
            else:
                module = StyleIDEncoder.from_open_clip("test-tiny", pretrained=None, lora_rank=8 if name == "styleid" else 0)
        return module.to(self.device).eval()

    def identity_loss(self, name: str, reference: Any = None, crop: str = "center"):
        """A fresh `IdentityLoss` around the shared (built-once) model: cheap, and safe per request."""
        from styleid_guidance.identity_losses import build_identity_loss

        return build_identity_loss(name, reference, model=self.identity_module(name), device=self.device, crop=crop,
                                   detector=self.detector, model_rootpath=self.model_rootpath,
                                   precision=getattr(self, "precision", None))  # `styleid demo --precision`

    # -- faces ----------------------------------------------------------------------------------------

    def detect_faces(self, image: Image.Image) -> list:
        """Faces in an RGB image, largest first, in its pixel coordinates.

        Detection runs at most DETECT_SIDE px wide (the demo's faces fill much of a portrait; the
        detector's image pyramid costs ~3x less than at 512 px) and is remembered per image content, as
        people re-run the same photo with other settings. If the configured detector cannot run
        (RetinaFace weights missing offline), switch to MTCNN, which ships its weights, and say so."""
        key = (self.detector, image.size, hashlib.sha1(image.tobytes()).hexdigest())
        with self._lock:
            if key in self._faces:
                self._faces.move_to_end(key)
                return self._faces[key]
        scale = min(1.0, DETECT_SIDE / max(image.size))
        small = image if scale == 1.0 else image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                                                         Image.Resampling.BILINEAR)
        faces = [dataclasses.replace(f, box=f.box / scale, landmarks=f.landmarks / scale) for f in self._detect(small)]
        with self._lock:
            self._faces[key] = faces
            while len(self._faces) > 64:
                self._faces.popitem(last=False)
        return faces

    def _detect(self, image: Image.Image) -> list:
        from styleid_guidance.faces.detection import detect_faces

        try:
            return detect_faces(image, detector=self.detector, model_rootpath=self.model_rootpath, device=self.device)
        except NoFaceError:
            return []
        except StyleIDError as err:
            if self.detector == OFFLINE_DETECTOR:
                raise
            self._use_mtcnn(_first_line(err))
            return detect_faces(image, detector=self.detector, device=self.device)

    def _use_mtcnn(self, why: str) -> None:
        self.notes.append(f"Face detector {self.detector} is unavailable ({why}); using MTCNN instead.")
        self.detector_note = f"{self.detector} unavailable: {why}"
        self.detector = OFFLINE_DETECTOR

    # -- stylizers ------------------------------------------------------------------------------------

    def stylizer(self, framework: str):
        label = framework_label(framework)
        return self._get(f"fw:{framework}", label, lambda: self._build_stylizer(framework))

    def _stylizer_class(self, framework: str):
        entry = STYLIZERS[framework]
        try:
            return entry.load()  # an ImportError comes back as a one-line StyleIDError
        except StyleIDError:
            raise
        except Exception as err:  # the module itself raising while it is being imported
            raise StyleIDError(f"cannot import {entry.target} ({type(err).__name__}: {_first_line(err)})") from None

    def _framework_kwargs(self, framework: str) -> dict[str, Any]:
        prefix = f"{framework}."
        return {k[len(prefix):]: _coerce(v) for k, v in self.weights.items() if k.startswith(prefix)}

    def _build_stylizer(self, framework: str):
        reason = self._profile_reason(framework)
        if reason:
            raise StyleIDError(reason)
        cls = self._stylizer_class(framework)
        if self.tiny:
            return cls.tiny(device=str(self.device))
        return cls.from_pretrained(device=str(self.device), **self._framework_kwargs(framework))

    def _profile_reason(self, framework: str) -> str | None:
        if framework in profile_frameworks(self.profile):
            return None
        needs = next(p for p in REAL_PROFILES if framework in profile_frameworks(p))
        return f"not part of the {self.profile} profile (launch with --profile {needs} or larger)"

    # -- JoJoGAN --------------------------------------------------------------------------------------

    def jojogan(self):
        return self._get("jojogan", "JoJoGAN", self._build_jojogan)

    def _build_jojogan(self):
        try:
            from styleid_guidance.jojogan.api import JoJoGAN
        except Exception as err:
            raise StyleIDError(f"cannot import styleid_guidance.jojogan.api.JoJoGAN ({type(err).__name__}: {_first_line(err)})") from None
        if self.tiny:
            return JoJoGAN.tiny(device=self.device)
        for key in ("jojogan.stylegan_ckpt", "jojogan.e4e_ckpt"):
            if not Path(self.weights[key]).expanduser().is_file():
                raise StyleIDError(f"{self.weights[key]} not found (pass --weights {key}=PATH)")
        return JoJoGAN.from_pretrained(self.weights["jojogan.stylegan_ckpt"], self.weights["jojogan.e4e_ckpt"],
                                       device=self.device, detector=self.detector)

    # -- what the status panel shows ------------------------------------------------------------------

    def availability(self) -> list[Availability]:
        """Cheap check of every component without loading weights: imports, profile membership, and
        whether each weight source is on disk / in the Hub cache / downloadable now."""
        rows = []
        for name in IDENTITY_MODELS:
            rows.append(Availability(f"id:{name}", IDENTITY_LABELS[name], self._failed.get(f"id:{name}") or self._identity_reason(name)))
        for fw in frameworks():
            rows.append(Availability(f"fw:{fw}", framework_label(fw), self._failed.get(f"fw:{fw}") or self._framework_reason(fw)))
        rows.append(Availability("jojogan", "JoJoGAN", self._failed.get("jojogan") or self._jojogan_reason()))
        rows.append(Availability("detector", "Face detector", None,
                                 self.detector.upper() + (f"; {self.detector_note}" if self.detector_note else "")))
        return rows

    def _identity_reason(self, name: str) -> str | None:
        if self.tiny:
            return None
        source = self.weights.get(name)
        if name == "arcface":  # facexlib's IR-SE50: a file, facexlib's folder, or a GitHub download
            return arcface_reason(source, self.model_rootpath)
        if name == "clip" and not Path(str(source)).expanduser().exists():
            import open_clip

            model, _, pretrained = str(source).partition("/")
            hub_id = (open_clip.get_pretrained_cfg(model, pretrained or "openai") or {}).get("hf_hub", "").strip("/")
            return weights_reason(hub_id, "CLIP") if hub_id else f"CLIP: open_clip has no Hub copy of {source}"
        return weights_reason(source, IDENTITY_LABELS[name])

    def _framework_reason(self, framework: str) -> str | None:
        reason = self._profile_reason(framework)
        if reason:
            return reason
        try:
            self._stylizer_class(framework)
        except StyleIDError as err:
            return str(err)
        if self.tiny:
            return None
        # the Hub ids / folders from_pretrained would load: the registry's, with --weights overrides
        for arg, value in {**STYLIZERS[framework].models, **self._framework_kwargs(framework)}.items():
            if isinstance(value, str) and "/" in value:
                reason = weights_reason(value, f"{arg}")
                if reason:
                    return reason
        return None

    def _jojogan_reason(self) -> str | None:
        if self.tiny:
            return None
        missing = [k for k in ("jojogan.stylegan_ckpt", "jojogan.e4e_ckpt") if not Path(self.weights[k]).expanduser().is_file()]
        if missing:
            return f"{self.weights[missing[0]]} not found (pass --weights {missing[0]}=PATH)"
        return None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
