"""The models `styleid eval` compares: the StyleID encoder and the paper's baselines.

`NAME=MODEL` overrides a baseline's weights: an open_clip `name[/pretrained]` for clip/siglip2
(`clip=test-tiny` is the offline random test model), a weights file/folder for arcface
(`arcface=random` is a random IR-SE50, for tests), adaface (an AdaFace IR `.ckpt` or its folder;
default: ADAFACE_HOME, see styleid_guidance.baselines.adaface) and antelopev2 (an insightface pack folder; default:
the antelopev2 pack under ~/.insightface/models, or its Hugging Face copy).

antelopev2 is used as InstantID uses it (styleid_guidance.faces.insightface_app.FaceApp): the pack's own SCRFD
detector at 640 px, the largest face, insightface's `norm_crop` to 112 px and glintr100's embedding,
L2-normalised here for the cosine (`--detector` does not apply to it).

Face models (arcface, adaface) with crop="face" align the largest face to ArcFace's 112-px 5-point
template. With `no_face="center"` an image without a detectable face is embedded from the centred
square instead (the Table-1 preset does this so one heavily stylised image does not end the run), and
the images this happened to are counted.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import Arg, NoFaceError, StyleIDError
from ..faces.detection import FaceRegion, no_face_error
from ..files.images import load_image, to_tensor
from ..hub.resolve import facexlib_weights_dir, hub_endpoint, hub_offline, offline, reachable
from ..baselines.weights import WeightsUnavailable, hub_model, open_clip_weights
from .calibration import CALIBRATION_FILE

BASELINES = {"clip": "ViT-L-14/openai", "siglip2": "ViT-L-16-SigLIP2-256/webli", "arcface": "default",
             "adaface": "default", "antelopev2": "antelopev2"}
FACE_MODELS = ("arcface", "adaface", "antelopev2")
NO_FACE = ("error", "center")


class ModelUnavailable(StyleIDError):
    """A model could not be loaded (weights missing, not downloadable, damaged): the Table-1 preset
    lists such a baseline as skipped instead of failing the run."""


@dataclass
class ModelSpec:
    """A model to evaluate: its display name, kind (styleid | clip | siglip2 | arcface | adaface),
    weights, and (when set) its own crop and no-face policy instead of the run's."""

    name: str
    kind: str
    source: str
    crop: str | None = None
    no_face: str = "error"
    precision: str = "fp32"  # of the torch models; onnxruntime's antelopev2 is always fp32

    @property
    def key(self) -> str:
        """Identifies the weights (a local folder's files' mtimes and sizes are part of it) and, when it is not
        fp32, the precision, for the cache."""
        path = Path(self.source)
        suffix = "" if self.precision == "fp32" or self.kind == "antelopev2" else f"@{self.precision}"
        if path.exists():
            # the calibration eval may write into the folder afterwards is not weights: it must not change the key
            files = sorted(p for p in (path.rglob("*") if path.is_dir() else [path]) if p.is_file() and p.name != CALIBRATION_FILE)
            stamp = ";".join(f"{p.relative_to(path) if path.is_dir() else p.name}:{p.stat().st_mtime_ns}:{p.stat().st_size}" for p in files)
            return f"{self.kind}:{path.resolve()}:{stamp}{suffix}"
        return f"{self.kind}:{self.source}{suffix}"

    def cache_crop(self, crop: str) -> str:
        """The crop part of the cache key: a fallback embedding must not be served to a strict run."""
        return crop if self.no_face == "error" or crop != "face" else f"{crop}+no-face={self.no_face}"


def parse_baseline(text: str) -> ModelSpec:
    kind, _, override = text.partition("=")
    kind = kind.strip().lower()
    if kind not in BASELINES:
        raise StyleIDError("{baseline}: choose from {choices} (optionally NAME=MODEL)", param="baselines",
                           baseline=Arg("baselines", text, flag="--baseline"), choices=", ".join(BASELINES))
    return ModelSpec(kind, kind, override.strip() or BASELINES[kind])


class Embedder:
    """files → [N,D] embeddings, with one framing and no-face rule for every model: crop="center"/"none" frame each
    file as the model's own processor does; crop="face" takes the largest face the model's finder gives, and an
    image without one is a NoFaceError, or with `no_face="center"` is embedded centre-framed and counted in
    `fallbacks`. What differs per model (how a face is framed, how a batch is run) is its `network`."""

    def __init__(self, network: "_Network", crop: str, no_face: str = "error") -> None:
        self.network, self.crop, self.no_face = network, crop, no_face
        self.fallbacks: set[Path] = set()

    def __call__(self, files: Sequence[Path]) -> torch.Tensor:
        if self.crop != "face":
            return self.network.encode_files(files, self.crop)
        items = []
        for f in files:
            item = self.network.frame_face(f)
            if item is None:
                if self.no_face != "center":
                    raise no_face_error(f)
                self.fallbacks.add(f)
                item = self.network.frame_centre(f)
            items.append(item)
        return self.network.encode(items)


class _Network:
    """One model behind `Embedder`: `frame_face(file)` (its input for the file's largest face, None when there is
    none), `frame_centre(file)` (its input without a face), `encode(items)`, `encode_files(files, crop)`."""

    def __init__(self, detector: str, model_rootpath: str | None) -> None:
        self.detector, self.model_rootpath = detector, model_rootpath

    def region(self, pil: Any, file: Path) -> FaceRegion | None:
        try:
            return FaceRegion.detect(pil, self.detector, self.model_rootpath, name=str(file))
        except NoFaceError:
            return None

    def frame_face(self, file: Path) -> Any:
        raise NotImplementedError

    def frame_centre(self, file: Path) -> Any:
        raise NotImplementedError

    def encode(self, items: list[Any]) -> torch.Tensor:
        raise NotImplementedError

    def encode_files(self, files: Sequence[Path], crop: str) -> torch.Tensor:
        raise NotImplementedError


def _centre_region(size: tuple[int, int]) -> FaceRegion:
    w, h = size
    side = min(w, h)
    x0, y0 = (w - side) / 2, (h - side) / 2
    return FaceRegion.from_box((x0, y0, x0 + side, y0 + side), size)


def _load_detector(crop: str, detector: str, model_rootpath: str | None, device: torch.device) -> None:
    """Load the face detector with the model, so missing detector weights count as the model's."""
    if crop == "face":
        from ..faces.detection import detect_faces

        detect_faces(np.zeros((64, 64, 3), np.uint8), detector=detector, model_rootpath=model_rootpath, device=device)


class _AdaFace(_Network):
    """AdaFace IR: faces aligned to ArcFace's 112-px template; no face: the centred square, aligned the same way."""

    def __init__(self, spec: ModelSpec, device: torch.device, detector: str, model_rootpath: str | None) -> None:
        from ..baselines.adaface import load_adaface

        super().__init__(detector, model_rootpath)
        self.model, self.device = load_adaface(None if spec.source == "default" else spec.source, device=device), device
        self.size = self.model.input_size

    def _cut(self, pil: Any, region: FaceRegion) -> torch.Tensor:
        return region.crop(to_tensor(pil), self.size, template="arcface")[0]

    def frame_face(self, file: Path) -> torch.Tensor | None:
        pil = load_image(file)
        region = self.region(pil, file)
        return None if region is None else self._cut(pil, region)

    def frame_centre(self, file: Path) -> torch.Tensor:
        pil = load_image(file)
        return self._cut(pil, _centre_region(pil.size))

    def encode(self, items: list[torch.Tensor]) -> torch.Tensor:
        return self.model.embed_rgb(torch.stack(items).to(self.device))

    def encode_files(self, files: Sequence[Path], crop: str) -> torch.Tensor:
        from ..encoder.preprocess import _resize, center_crop, resize_shortest_side

        size = self.size
        crops = []
        for f in files:
            x = to_tensor(load_image(f))
            x = center_crop(resize_shortest_side(x, size), size) if crop == "center" else _resize(x, (size, size))
            crops.append(x[0])
        return self.encode(crops)


class _ArcFace(_Network):
    """facexlib's IR-SE50 through the identity loss (its own template); no face: the centred square."""

    def __init__(self, spec: ModelSpec, crop: str, device: torch.device, detector: str, model_rootpath: str | None) -> None:
        from ..baselines.arcface import build_arcface_backbone
        from ..identity_losses import build_identity_loss

        super().__init__(detector, model_rootpath)
        if spec.source == "random":
            # deterministic, so cached and fresh embeddings agree; the caller's RNG state is left alone
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model: Any = build_arcface_backbone()
        else:
            model = None if spec.source == "default" else spec.source
        self.loss = build_identity_loss("arcface", model=model, device=device, crop=crop, detector=detector,
                                        model_rootpath=model_rootpath, precision=spec.precision)

    def frame_face(self, file: Path) -> tuple[torch.Tensor, FaceRegion] | None:
        pil = load_image(file)
        region = self.region(pil, file)
        return None if region is None else (to_tensor(pil), region)

    def frame_centre(self, file: Path) -> tuple[torch.Tensor, FaceRegion]:
        pil = load_image(file)
        return to_tensor(pil), _centre_region(pil.size)

    def encode(self, items: list[tuple[torch.Tensor, FaceRegion]]) -> torch.Tensor:
        return torch.cat([self.loss.embed(x, face_region=region) for x, region in items])

    def encode_files(self, files: Sequence[Path], crop: str) -> torch.Tensor:
        return self.loss.embed_photos([str(f) for f in files])


def _square_bgr(pil: Any, crop: str, size: int = 112) -> np.ndarray:
    """A size² BGR uint8 crop without landmarks: the centred square ("center", and the no-face fallback)
    or the whole image squashed ("none")."""
    import cv2

    rgb = np.asarray(pil)
    if crop != "none":
        h, w = rgb.shape[:2]
        side = min(h, w)
        rgb = rgb[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
    return np.ascontiguousarray(cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)[:, :, ::-1])


class _Antelope(_Network):
    """The antelopev2 pack as InstantID uses it: its own SCRFD detector (not `detector`), the largest box, glintr100;
    no face: the centred square. insightface's embedding is raw; the cosine needs unit norm."""

    def __init__(self, spec: ModelSpec, device: torch.device) -> None:
        from ..faces.insightface_app import PACKS, FaceApp, default_root, pack_dir

        super().__init__("scrfd", None)  # the pack's own
        try:
            with hub_offline():  # on disk or in the Hub cache: no network needed
                folder = pack_dir(spec.source)
        except StyleIDError:
            if spec.source not in PACKS or Path(spec.source).exists():
                raise
            ok, why = (False, "downloads are off") if offline() else reachable(hub_endpoint())
            if not ok:  # fail at once, saying where the files go, instead of a minute of Hub retries
                where = default_root() / "models" / spec.source
                raise WeightsUnavailable("insightface pack {pack!r} not found in {where} and cannot be downloaded now ({why}); "
                                         "put {files} there, or pass the pack folder as {folder}", param="baselines",
                                         pack=spec.source, where=where, why=why, files=" and ".join(PACKS[spec.source][:2]),
                                         folder=Arg("baselines", flag="--baseline", metavar="antelopev2=FOLDER")) from None
            folder = pack_dir(spec.source)
        self.app = FaceApp(folder, device=str(device))
        if self.app.recognition is None:
            raise StyleIDError(f"{self.app.model_dir}: the pack has no recognition model; put glintr100.onnx there")

    def frame_face(self, file: Path) -> np.ndarray | None:
        from ..faces.insightface_app import largest, to_bgr

        faces = self.app.get(to_bgr(load_image(file)))
        return np.asarray(largest(faces).embedding, np.float32) if faces else None  # upstream's largest-box rule

    def frame_centre(self, file: Path) -> np.ndarray:
        return self.app.embed_crops(_square_bgr(load_image(file), "center")[None])[0]

    def encode(self, items: list[np.ndarray]) -> torch.Tensor:
        return torch.nn.functional.normalize(torch.from_numpy(np.stack(items)), dim=-1)

    def encode_files(self, files: Sequence[Path], crop: str) -> torch.Tensor:
        return self.encode([self.app.embed_crops(_square_bgr(load_image(f), crop)[None])[0] for f in files])


def load_encoder(spec: ModelSpec, device: torch.device) -> Any:
    """The StyleIDEncoder a styleid / clip / siglip2 spec names, in eval mode (eval's and score's one loader):
    missing weights fail at once, before the slow imports; a random test tower is the same on every run."""
    if spec.kind == "styleid":
        weights = hub_model(spec.source)
    else:
        name, _, pretrained = spec.source.partition("/")
        tag = None if name == "test-tiny" else (pretrained or "openai")
        weights = open_clip_weights(name, tag, spec.kind)
    from ..encoder.model import StyleIDEncoder

    with weights:
        if spec.kind == "styleid":
            encoder = StyleIDEncoder.from_pretrained(spec.source, device=device)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)  # a random test model must be the same on every run for the cache
                encoder = StyleIDEncoder.from_open_clip(name, pretrained=tag, lora_rank=0, device=device)
    return encoder.eval()


class _Encoder(_Network):
    """A StyleID / CLIP-family encoder, prepared per image exactly as `StyleIDEncoder.embed` prepares it (so eval,
    score and embed agree); no face: its centre crop."""

    def __init__(self, spec: ModelSpec, device: torch.device, batch_size: int, detector: str,
                 model_rootpath: str | None) -> None:
        from ..devices import resolve_precision

        super().__init__(detector, model_rootpath)
        self.encoder, self.batch_size, self.spec = load_encoder(spec, device), batch_size, spec
        self.precision = resolve_precision(spec.precision, self.encoder.device)

    def frame_face(self, file: Path) -> torch.Tensor | None:
        try:
            return self.encoder.prepare_image(str(file), "face", self.detector, self.model_rootpath)
        except NoFaceError:
            return None

    def frame_centre(self, file: Path) -> torch.Tensor:
        return self.encoder.prepare_image(str(file), "center", self.detector, self.model_rootpath)

    def encode(self, items: list[torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([self.encoder.encode_pixels(torch.stack(items[i:i + self.batch_size]).to(self.encoder.device),
                                                         self.precision) for i in range(0, len(items), self.batch_size)])

    def encode_files(self, files: Sequence[Path], crop: str) -> torch.Tensor:
        return self.encoder.embed([str(f) for f in files], crop=crop, batch_size=self.batch_size, detector=self.detector,
                                  model_rootpath=self.model_rootpath, precision=self.spec.precision)


def _arcface_weights_check(spec: ModelSpec, model_rootpath: str | None) -> None:
    """facexlib's download: fail at once, and without its progress line, when offline."""
    from ..baselines.arcface import ARCFACE_FILE, ARCFACE_URL

    if spec.source != "default":
        return
    folder = facexlib_weights_dir(model_rootpath)
    ok, why = (True, "") if (folder / ARCFACE_FILE).is_file() else reachable(ARCFACE_URL)
    if not ok:
        raise WeightsUnavailable("ArcFace weights not found at {path} and cannot be downloaded now ({why}); put {file} "
                                 "there ({root}) or pass its path as {weights}", param="baselines", path=folder / ARCFACE_FILE,
                                 why=why, file=ARCFACE_FILE, root=Arg("model_rootpath"),
                                 weights=Arg("baselines", flag="--baseline", metavar="arcface=PATH"))


def _network(spec: ModelSpec, crop: str, device: torch.device, batch_size: int, detector: str,
             model_rootpath: str | None) -> _Network:
    if spec.kind == "antelopev2":
        return _Antelope(spec, device)  # its own detector: --detector does not apply
    if spec.kind == "adaface":
        network: _Network = _AdaFace(spec, device, detector, model_rootpath)
    elif spec.kind == "arcface":
        _arcface_weights_check(spec, model_rootpath)
        network = _ArcFace(spec, crop, device, detector, model_rootpath)
    else:
        return _Encoder(spec, device, batch_size, detector, model_rootpath)  # its detector loads on first use
    _load_detector(crop, detector, model_rootpath, device)
    return network


def build_embedder(spec: ModelSpec, crop: str, device: torch.device, batch_size: int, detector: str,
                   model_rootpath: str | None) -> Embedder:
    """Load the model; any failure to load it is a ModelUnavailable naming the model."""
    try:
        return Embedder(_network(spec, crop, device, batch_size, detector, model_rootpath), crop, spec.no_face)
    except ModelUnavailable:
        raise
    except StyleIDError as err:  # missing, undownloadable or damaged weights, a bad path: named, its wording kept
        raise err.wrapped(ModelUnavailable, f"{spec.name}: ") from err
