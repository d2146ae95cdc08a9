"""Model folders and the STYLEID_MODEL value: what StyleIDLoader loads and the other nodes share.

Folders are registered with ComfyUI's `folder_paths` (`ComfyUI/models/styleid/`, `ComfyUI/models/jojogan/`,
plus any `extra_model_paths.yaml` entries for those names). Nothing is ever downloaded: a name that is not
on disk is one sentence saying which folder to fill.
"""
from __future__ import annotations

from collections.abc import Sequence

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from styleid_guidance.errors import NoFaceError, StyleIDError
from styleid_guidance.eval.calibration import Calibration, read_calibration
from styleid_guidance.options import DETECTORS, OFFLINE_DETECTOR, PRECISIONS

TEST_TINY = "test-tiny"
STYLEID_FOLDER = "styleid"
JOJOGAN_FOLDER = "jojogan"
ARCFACE_SUFFIXES = (".pth", ".pt", ".safetensors")
STYLE_SUFFIXES = (".pt", ".pth")
RETINAFACE_FILE = "detection_Resnet50_Final.pth"  # facexlib's detector weights: a detector, not an identity model
DEVICES = ("auto", "cpu", "cuda")  # "auto": ComfyUI's own device (its --cpu and GPU choice), see resolve_device


def register_model_folders() -> None:
    """Add `models/styleid` and `models/jojogan` to ComfyUI's model folders (idempotent)."""
    import folder_paths

    for name in (STYLEID_FOLDER, JOJOGAN_FOLDER):
        default = os.path.join(folder_paths.models_dir, name)
        if name not in folder_paths.folder_names_and_paths:
            folder_paths.folder_names_and_paths[name] = ([default], {""})  # folders and any file: we filter ourselves
        elif default not in folder_paths.folder_names_and_paths[name][0]:
            folder_paths.add_model_folder_path(name, default, is_default=True)


def model_dirs(kind: str) -> list[Path]:
    """The registered folders for `kind` ("styleid" or "jojogan"); [] outside ComfyUI."""
    try:
        import folder_paths
    except ImportError:
        return []
    register_model_folders()
    return [Path(p) for p in folder_paths.get_folder_paths(kind)]


def default_dir(kind: str) -> str:
    dirs = model_dirs(kind)
    return str(dirs[0]) if dirs else f"ComfyUI/models/{kind}"


def styleid_choices() -> list[str]:
    """test-tiny, every model folder (StyleID encoder or distilled student) and every ArcFace weights file."""
    names: list[str] = []
    for root in model_dirs(STYLEID_FOLDER):
        if not root.is_dir():
            continue
        for entry in sorted(root.iterdir()):
            if entry.is_dir() or (entry.suffix in ARCFACE_SUFFIXES and entry.name != RETINAFACE_FILE):
                names.append(entry.name)
    return [TEST_TINY, *dict.fromkeys(names)]


def style_choices() -> list[str]:
    names = [p.name for root in model_dirs(JOJOGAN_FOLDER) if root.is_dir()
             for p in sorted(root.iterdir()) if p.suffix in STYLE_SUFFIXES]
    return list(dict.fromkeys(names))


def find_model(kind: str, name: str) -> Path:
    """The file or folder `name` in the registered folders of `kind`, or a one-sentence StyleIDError."""
    for root in model_dirs(kind):
        path = root / name
        if path.exists():
            return path
    raise StyleIDError(f"model {name!r} not found: put it into {default_dir(kind)} (nothing is downloaded)")


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        try:
            import comfy.model_management as mm

            return mm.get_torch_device()
        except ImportError:
            device = ""
    from styleid_guidance.devices import resolve_device as resolve

    return resolve(device or None)


def detector_rootpath(detector: str) -> str | None:
    """The folder facexlib reads the RetinaFace weights from (a StyleID model folder or facexlib's own); mtcnn
    ships its weights (None). Never a download: missing weights are one sentence."""
    if detector not in DETECTORS:
        raise StyleIDError(f"detector must be one of {', '.join(DETECTORS)}, got {detector!r}")
    if detector == OFFLINE_DETECTOR:
        return None
    from styleid_guidance.hub.resolve import facexlib_weights_dir

    for folder in [*model_dirs(STYLEID_FOLDER), facexlib_weights_dir(None)]:
        if (folder / RETINAFACE_FILE).is_file():
            return str(folder)
    raise StyleIDError(f"the retinaface detector needs {RETINAFACE_FILE} in {default_dir(STYLEID_FOLDER)}; "
                       "put it there or choose the mtcnn detector (nothing is downloaded)")


@dataclass
class StyleIDModel:
    """STYLEID_MODEL: an identity model ready to score, plus how faces are found for it.

    Two losses share one network: `face` embeds a 5-point-aligned crop, `center` the centre crop used when no
    face is found (then the image is flagged, not refused)."""

    name: str
    kind: str  # "styleid" (encoder or distilled student) or "arcface"
    face: Any  # IdentityLoss, crop="face"
    center: Any  # IdentityLoss, crop="center"
    detector: str
    precision: str
    calibration: Calibration | None = None  # the model folder's calibration.json (`styleid eval --save-calibration`)
    model_rootpath: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return self.face.device

    def likeness(self, similarity: float) -> float | None:
        """Calibrated P(a person says "same") in percent, or None without a calibration."""
        if self.calibration is None or not math.isfinite(similarity):
            return None
        return 100.0 * self.calibration.probability(similarity)

    def region(self, image: torch.Tensor, name: str) -> Any:
        """The face region of one [3,H,W] image, or None when no face is found (detection has no gradient)."""
        from styleid_guidance.faces.detection import FaceRegion

        try:
            return FaceRegion.detect(image.detach().cpu(), self.detector, self.model_rootpath, name=name)
        except NoFaceError:
            return None

    def embed(self, images: torch.Tensor | Sequence[torch.Tensor], what: str) -> tuple[torch.Tensor, list[bool]]:
        """[B,3,H,W] in 0..1, or a list of [1,3,H,W] photos of different sizes → ([B,D] L2-normalised embeddings,
        per-image "face found" flags). One image at a time, as `styleid verify` does, so the two give the same
        numbers."""
        out, found = [], []
        photos = list(images.split(1)) if isinstance(images, torch.Tensor) else list(images)
        with torch.no_grad():
            for i, x in enumerate(photos):
                region = self.region(x[0], f"{what} {i}")
                loss = self.face if region is not None else self.center
                out.append(loss.embed(x.to(loss.device), face_region=region) if region is not None else loss.embed(x.to(loss.device)))
                found.append(region is not None)
        return torch.cat(out).float().cpu(), found


def load_styleid_model(name: str, device: str = "auto", precision: str = "fp32", detector: str = OFFLINE_DETECTOR) -> StyleIDModel:
    """Build the STYLEID_MODEL named `name` (see `styleid_choices`)."""
    from styleid_guidance import StyleIDEncoder
    from styleid_guidance.identity_losses import ArcFaceLoss, StyleIDLoss

    if precision not in PRECISIONS:
        raise StyleIDError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if device not in DEVICES:
        raise StyleIDError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    model_rootpath = detector_rootpath(detector)
    dev = resolve_device(device)
    common = dict(detector=detector, model_rootpath=model_rootpath, precision=precision)
    calibration = None
    # built outside inference mode: ComfyUI executes nodes under torch.inference_mode(), and weights created
    # there are inference tensors, which guidance and JoJoGAN could not back-propagate through
    with torch.inference_mode(False):
        if name == TEST_TINY:
            kind, model = "styleid", StyleIDEncoder.from_pretrained(TEST_TINY, device=dev).eval()
        else:
            path = find_model(STYLEID_FOLDER, name)
            if path.is_file():
                from styleid_guidance.baselines.arcface import load_arcface_backbone

                kind, model = "arcface", load_arcface_backbone(path, model_rootpath=model_rootpath, device=dev)
            else:
                kind, model = "styleid", StyleIDEncoder.from_pretrained(path, device=dev).eval()
                calibration = read_calibration(path)
        cls = ArcFaceLoss if kind == "arcface" else StyleIDLoss
        face, center = cls(model, crop="face", **common), cls(model, crop="center", **common)
    return StyleIDModel(name, kind, face, center, detector, precision, calibration, model_rootpath)
