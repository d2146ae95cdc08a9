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
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..errors import NoFaceError, StyleIDError
from ..faces.detection import FaceRegion
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
        raise StyleIDError(f"baseline {text!r}: choose from {', '.join(BASELINES)} (optionally NAME=MODEL)",
                           cli=f"--baseline {text!r}: choose from {', '.join(BASELINES)} (optionally NAME=MODEL)")
    return ModelSpec(kind, kind, override.strip() or BASELINES[kind])


class Embedder:
    """files → [N,D] normalised embeddings; `fallbacks` collects the files embedded without a face."""

    def __init__(self, fn: Callable[[Sequence[Path]], torch.Tensor]) -> None:
        self.fn = fn
        self.fallbacks: set[Path] = set()

    def __call__(self, files: Sequence[Path]) -> torch.Tensor:
        return self.fn(files)


def _centre_region(size: tuple[int, int]) -> FaceRegion:
    w, h = size
    side = min(w, h)
    x0, y0 = (w - side) / 2, (h - side) / 2
    return FaceRegion.from_box((x0, y0, x0 + side, y0 + side), size)


def face_region(pil: Any, file: Path, spec: ModelSpec, detector: str, model_rootpath: str | None,
                embedder: Embedder) -> FaceRegion:
    try:
        return FaceRegion.detect(pil, detector, model_rootpath, name=str(file))
    except NoFaceError:
        if spec.no_face != "center":
            raise
        embedder.fallbacks.add(file)
        return _centre_region(pil.size)


def _load_detector(crop: str, detector: str, model_rootpath: str | None, device: torch.device) -> None:
    """Load the face detector with the model, so missing detector weights count as the model's."""
    if crop == "face":
        from ..faces.detection import detect_faces

        detect_faces(np.zeros((64, 64, 3), np.uint8), detector=detector, model_rootpath=model_rootpath, device=device)


def _adaface_embedder(spec: ModelSpec, crop: str, device: torch.device, detector: str, model_rootpath: str | None) -> Embedder:
    from ..baselines.adaface import load_adaface
    from ..encoder.preprocess import _resize, center_crop, resize_shortest_side

    model = load_adaface(None if spec.source == "default" else spec.source, device=device)
    _load_detector(crop, detector, model_rootpath, device)
    size = model.input_size

    def embed(files: Sequence[Path]) -> torch.Tensor:
        crops = []
        for f in files:
            pil = load_image(f)
            x = to_tensor(pil)
            if crop == "face":
                x = face_region(pil, f, spec, detector, model_rootpath, embedder).crop(x, size, template="arcface")
            elif crop == "center":
                x = center_crop(resize_shortest_side(x, size), size)
            else:
                x = _resize(x, (size, size))
            crops.append(x[0])
        return model.embed_rgb(torch.stack(crops).to(device))

    embedder = Embedder(embed)
    return embedder


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


def _antelope_embedder(spec: ModelSpec, crop: str, device: torch.device) -> Embedder:
    from ..faces.insightface_app import PACKS, FaceApp, default_root, largest, pack_dir, to_bgr

    try:
        with hub_offline():  # on disk or in the Hub cache: no network needed
            folder = pack_dir(spec.source)
    except StyleIDError:
        if spec.source not in PACKS or Path(spec.source).exists():
            raise
        ok, why = (False, "downloads are off") if offline() else reachable(hub_endpoint())
        if not ok:  # fail at once, saying where the files go, instead of a minute of Hub retries
            where = default_root() / "models" / spec.source
            raise WeightsUnavailable(f"insightface pack {spec.source!r} not found in {where} and cannot be downloaded now "
                                     f"({why}); put {' and '.join(PACKS[spec.source][:2])} there, or pass the pack folder",
                                     cli=f"insightface pack {spec.source!r} not found in {where} and cannot be downloaded now "
                                         f"({why}); put {' and '.join(PACKS[spec.source][:2])} there, or pass "
                                         f"--baseline antelopev2=FOLDER") from None
        folder = pack_dir(spec.source)
    app = FaceApp(folder, device=str(device))
    if app.recognition is None:
        raise StyleIDError(f"{app.model_dir}: the pack has no recognition model; put glintr100.onnx there")

    def embed(files: Sequence[Path]) -> torch.Tensor:
        out = []
        for f in files:
            pil = load_image(f)
            if crop == "face":
                faces = app.get(to_bgr(pil))
                if faces:
                    out.append(np.asarray(largest(faces).embedding, np.float32))  # upstream's largest-box rule
                    continue
                if spec.no_face != "center":
                    raise NoFaceError(f"{f}: no face found; use crop='center' (or a clearer, larger face)",
                                      cli=f"{f}: no face found; use --crop center (or a clearer, larger face)")
                embedder.fallbacks.add(f)
            out.append(app.embed_crops(_square_bgr(pil, "center" if crop == "face" else crop)[None])[0])
        z = torch.from_numpy(np.stack(out))
        return torch.nn.functional.normalize(z, dim=-1)  # insightface's embedding is raw; cosine needs unit norm

    embedder = Embedder(embed)
    return embedder


def _arcface_embedder(spec: ModelSpec, crop: str, device: torch.device, detector: str, model_rootpath: str | None) -> Embedder:
    from ..baselines.arcface import ARCFACE_FILE, ARCFACE_URL, build_arcface_backbone
    from ..identity_losses import build_identity_loss

    if spec.source == "default":  # facexlib's download: fail at once, and without its progress line, when offline
        folder = facexlib_weights_dir(model_rootpath)
        ok, why = (True, "") if (folder / ARCFACE_FILE).is_file() else reachable(ARCFACE_URL)
        if not ok:
            raise WeightsUnavailable(f"ArcFace weights not found at {folder / ARCFACE_FILE} and cannot be downloaded now ({why}); "
                                     f"put {ARCFACE_FILE} there or pass its path",
                                     cli=f"ArcFace weights not found at {folder / ARCFACE_FILE} and cannot be downloaded now "
                                         f"({why}); put {ARCFACE_FILE} there (--model-rootpath) or pass --baseline arcface=PATH")

    if spec.source == "random":
        # deterministic, so cached and fresh embeddings agree; the caller's RNG state is left alone
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model: Any = build_arcface_backbone()
    else:
        model = None if spec.source == "default" else spec.source
    loss = build_identity_loss("arcface", model=model, device=device, crop=crop, detector=detector, model_rootpath=model_rootpath,
                               precision=spec.precision)
    _load_detector(crop, detector, model_rootpath, device)

    def embed(files: Sequence[Path]) -> torch.Tensor:
        if crop != "face":
            return loss.embed_photos([str(f) for f in files])
        out = []
        for f in files:
            pil = load_image(f)
            out.append(loss.embed(to_tensor(pil), face_region=face_region(pil, f, spec, detector, model_rootpath, embedder)))
        return torch.cat(out)

    embedder = Embedder(embed)
    return embedder


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


def _encoder_embedder(spec: ModelSpec, crop: str, device: torch.device, batch_size: int, detector: str,
                      model_rootpath: str | None) -> Embedder:
    encoder = load_encoder(spec, device)

    def embed(files: Sequence[Path]) -> torch.Tensor:
        return encoder.embed([str(f) for f in files], crop=crop, batch_size=batch_size, detector=detector,
                             model_rootpath=model_rootpath, precision=spec.precision)

    return Embedder(embed)


def build_embedder(spec: ModelSpec, crop: str, device: torch.device, batch_size: int, detector: str,
                   model_rootpath: str | None) -> Embedder:
    """Load the model; any failure to load it is a ModelUnavailable naming the model."""
    try:
        if spec.kind == "adaface":
            return _adaface_embedder(spec, crop, device, detector, model_rootpath)
        if spec.kind == "arcface":
            return _arcface_embedder(spec, crop, device, detector, model_rootpath)
        if spec.kind == "antelopev2":
            return _antelope_embedder(spec, crop, device)
        return _encoder_embedder(spec, crop, device, batch_size, detector, model_rootpath)
    except ModelUnavailable:
        raise
    except StyleIDError as err:  # missing, undownloadable or damaged weights, a bad path
        cli = err.for_cli()
        if spec.kind == "adaface":
            cli = cli.replace("pass the file's path", "pass --baseline adaface=PATH")

        def named(message: str) -> str:
            return message if message.startswith(f"{spec.name}:") else f"{spec.name}: {message}"

        raise ModelUnavailable(named(str(err)), cli=named(cli)) from None
