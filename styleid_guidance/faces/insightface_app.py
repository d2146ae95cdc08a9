"""insightface's face front end, used exactly as upstream InstantID, InfiniteYou and IP-Adapter FaceID use it.

Upstream builds `FaceAnalysis(name=pack, root=..., providers=[CUDA, CPU])`, calls `prepare(ctx_id=0,
det_size=(640, 640))`, gives `get` the photo as a BGR uint8 array, keeps the face with the largest box area
(`(x2 − x1)·(y2 − y1)`, last of a stable sort on ties) and reads its `kps` and raw `embedding` (insightface's
ArcFace model runs on the `norm_crop` 112-px crop). InfiniteYou retries at det_size 320 and then 160 when 640
finds nothing: the SCRFD "bnkps" detector misses faces that fill the frame. `FaceApp` is that, plus:

- the pack is found without insightface's own download (a GitHub zip fetched with no timeout, blind to offline
  settings): a missing antelopev2 comes from its Hugging Face copy unless downloads are off; otherwise the
  error says which files to put where;
- onnxruntime providers follow a torch-style device ("cpu", "cuda", "cuda:1"), never CoreML by surprise;
- one copy of the weights serves every det size (upstream InfiniteYou loads the pack three times): the
  detector's input size is switched per call, which gives the same faces as three prepared instances.

    app = FaceApp("antelopev2")                 # or a pack folder; FaceApp.tiny() offline
    face = app.largest_face(photo)              # an insightface Face: .bbox .kps .det_score .embedding
    crop = norm_crop(to_bgr(photo), face.kps)   # the 112-px BGR crop the recogniser saw
"""
from __future__ import annotations

import contextlib
import os
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from ..errors import NoFaceError, StyleIDError
from ..hub.resolve import offline
from ..files.images import ImageInput, load_image

if TYPE_CHECKING:
    from insightface.app.common import Face

__all__ = ["DET_SIZE", "INFINITEYOU_DET_SIZES", "PACKS", "FaceApp", "default_root", "largest", "norm_crop",
           "onnx_providers", "pack_dir", "to_bgr"]

DET_SIZE = 640  # every upstream app: prepare(ctx_id=0, det_size=(640, 640))
INFINITEYOU_DET_SIZES = (640, 320, 160)  # InfiniteYou's _detect_face: the first size that finds a face wins
MODULES = ("detection", "recognition")  # what identity adapters read (bbox, kps, embedding)

# pack → (detector file, recogniser file, Hugging Face copy (repo, folder) or None)
PACKS: dict[str, tuple[str, str, tuple[str, str] | None]] = {
    "antelopev2": ("scrfd_10g_bnkps.onnx", "glintr100.onnx", ("ByteDance/InfiniteYou", "supports/insightface/models/antelopev2")),
    "buffalo_l": ("det_10g.onnx", "w600k_r50.onnx", None),
}
RELEASES_URL = "https://github.com/deepinsight/insightface/releases/download/model-zoo"


def default_root() -> Path:
    """insightface's root (`root/models/<pack>/`): $INSIGHTFACE_HOME, else ~/.insightface as insightface uses."""
    return Path(os.environ.get("INSIGHTFACE_HOME", "~/.insightface")).expanduser()


def _has_onnx(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("*.onnx"))


def _unnested(folder: Path) -> Path:
    # antelopev2.zip unpacks to antelopev2/antelopev2/*.onnx: use the inner folder, as everyone ends up doing
    inner = folder / folder.name
    return inner if not _has_onnx(folder) and _has_onnx(inner) else folder


def pack_dir(pack: str | os.PathLike = "antelopev2", root: str | os.PathLike | None = None) -> Path:
    """The folder holding a pack's .onnx files. `pack`: a folder, or a pack name looked up as
    `root/models/<pack>` (default root: `default_root()`); a missing antelopev2 is fetched from its Hugging
    Face copy unless HF_HUB_OFFLINE / STYLEID_OFFLINE is set. Never downloads anything else."""
    text = str(pack)
    path = Path(text).expanduser()
    if path.is_dir():
        folder = _unnested(path)
        if not _has_onnx(folder):
            raise StyleIDError(f"{path}: no .onnx files inside; put an insightface model pack there (e.g. antelopev2's "
                               f"{' and '.join(PACKS['antelopev2'][:2])})")
        return folder
    if path.exists():
        raise StyleIDError(f"{path}: is a file; give an insightface model-pack folder or a pack name ({', '.join(PACKS)})")
    if text not in PACKS:
        raise StyleIDError(f"{text}: no such folder and not a known insightface pack; use {' or '.join(PACKS)} or a pack folder")
    base = Path(root).expanduser() if root is not None else default_root()
    folder = _unnested(base / "models" / text)
    if _has_onnx(folder):
        return folder
    det, rec, hub = PACKS[text]
    where = base / "models" / text
    if hub is None or offline():
        source = f"the {text} pack ({RELEASES_URL}/{text}.zip)" if hub is None else f"the {text} pack"
        why = "downloads are off" if offline() else "it has no automatic download here"
        raise StyleIDError(f"insightface pack {text!r} not found in {where} and {why}; put {det} and {rec} from {source} "
                           f"into {where}, or give the pack folder")
    from ..hub.resolve import resolve_model_dir

    repo, sub = hub
    local = resolve_model_dir(repo, kind=f"insightface {text}", allow_patterns=(f"{sub}/{det}", f"{sub}/{rec}"))
    if not (local / sub / det).is_file():
        raise StyleIDError(f"{repo}: {sub}/{det} is missing from the download; put {det} and {rec} into {where}")
    return local / sub


def onnx_providers(device: str | Any | None = None) -> list:
    """onnxruntime providers for a torch-style device: CUDA (with its index) where onnxruntime has it, else CPU.
    None: CUDA if available, as upstream's ['CUDAExecutionProvider', 'CPUExecutionProvider']."""
    import onnxruntime as ort

    text = str(device) if device is not None else "cuda"
    available = ort.get_available_providers()
    if text.startswith("cuda") and "CUDAExecutionProvider" in available:
        index = int(text.split(":", 1)[1]) if ":" in text else 0
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    if text.startswith("cuda") and device is not None:
        warnings.warn("onnxruntime has no CUDA provider here (install onnxruntime-gpu); insightface runs on the CPU",
                      RuntimeWarning, stacklevel=3)
    return ["CPUExecutionProvider"]


def to_bgr(image: ImageInput) -> np.ndarray:
    """A project image (path, PIL, RGB array, tensor) as the BGR uint8 array insightface and cv2 expect."""
    return np.ascontiguousarray(np.asarray(load_image(image))[:, :, ::-1])


def largest(faces: Sequence[Face]) -> Face:
    """Upstream's rule: `sorted(faces, key=box area)[-1]` (stable, so the later face wins a tie)."""
    return sorted(faces, key=lambda f: (f.bbox[2] - f.bbox[0]) * (f.bbox[3] - f.bbox[1]))[-1]


@contextlib.contextmanager
def _quiet_skimage() -> Iterator[None]:
    # scikit-image >= 0.26 warns on every SimilarityTransform.estimate that insightface's norm_crop makes
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*estimate.*deprecated", category=FutureWarning)
        yield


def norm_crop(bgr: np.ndarray, kps: np.ndarray, size: int = 112) -> np.ndarray:
    """insightface's `face_align.norm_crop`: the ArcFace-template similarity warp (size a multiple of 112 or 128)."""
    from insightface.utils import face_align

    with _quiet_skimage():
        return face_align.norm_crop(bgr, landmark=np.asarray(kps, np.float32), image_size=size)


class FaceApp:
    """One insightface `FaceAnalysis` on a pack, prepared as upstream prepares it.

    `modules`: the insightface tasks to load (default detection + recognition; ("detection",) when another
    model embeds, None for the whole pack). `det_size` and `det_thresh` are `prepare`'s. Thread-safe."""

    def __init__(self, pack: str | os.PathLike = "antelopev2", root: str | os.PathLike | None = None, *,
                 device: str | Any | None = None, providers: list | None = None,
                 modules: Sequence[str] | None = MODULES, det_size: int = DET_SIZE, det_thresh: float = 0.5):
        try:
            from insightface.app import FaceAnalysis
        except ImportError:
            raise StyleIDError("the insightface face models need the insightface package: pip install insightface") from None
        self.model_dir = pack_dir(pack, root)
        self.providers = providers if providers is not None else onnx_providers(device)
        try:  # an absolute folder as `name` stops FaceAnalysis from looking under its root or downloading
            self.analysis = FaceAnalysis(name=str(self.model_dir.resolve()), providers=self.providers,
                                         allowed_modules=list(modules) if modules is not None else None)
        except AssertionError:  # FaceAnalysis asserts a detector is present
            raise StyleIDError(f"{self.model_dir}: no face detector among its .onnx files; put the pack's detection "
                               "model (scrfd_10g_bnkps.onnx or det_10g.onnx) there") from None
        except Exception as err:  # damaged or foreign .onnx files
            raise StyleIDError(f"{self.model_dir}: the insightface models cannot be loaded ({type(err).__name__}: "
                               f"{str(err).splitlines()[0][:160] if str(err) else ''}); download the pack again") from None
        self._lock = threading.Lock()
        self.prepare(det_size, det_thresh)

    @classmethod
    def tiny(cls, kind: str = "astronaut", **kwargs: Any) -> "FaceApp":
        """On the tiny deterministic pack of `styleid_guidance.tiny.insightface_pack` (offline, CPU)."""
        from styleid_guidance.tiny.insightface_pack import tiny_pack

        return cls(tiny_pack(kind), device=kwargs.pop("device", "cpu"), **kwargs)

    @property
    def recognition(self) -> Any | None:
        """insightface's ArcFace model of the pack (None when not loaded)."""
        return self.analysis.models.get("recognition")

    def prepare(self, det_size: int = DET_SIZE, det_thresh: float = 0.5) -> "FaceApp":
        """`FaceAnalysis.prepare(ctx_id=0, det_size=(det_size, det_size), det_thresh)`; the device comes from the
        providers (ctx_id >= 0 changes nothing in insightface)."""
        with self._lock:
            self.analysis.prepare(ctx_id=0, det_thresh=float(det_thresh), det_size=(int(det_size), int(det_size)))
            self.det_size = int(det_size)
        return self

    def get(self, bgr: np.ndarray, det_sizes: Sequence[int] | None = None) -> list[Face]:
        """`FaceAnalysis.get(bgr)` (faces in descending score; each with bbox, kps, det_score, embedding).
        `det_sizes`: try these detector sizes in turn and return the first non-empty result (upstream
        InfiniteYou: `INFINITEYOU_DET_SIZES`); default: the prepared size only."""
        bgr = np.asarray(bgr)
        if bgr.dtype != np.uint8 or bgr.ndim != 3 or bgr.shape[2] != 3:
            raise StyleIDError(f"insightface needs a BGR uint8 HxWx3 array, got {bgr.dtype} {tuple(bgr.shape)}")
        sizes = [self.det_size] if det_sizes is None else [int(s) for s in det_sizes]
        detector = self.analysis.det_model
        faces: list = []
        with self._lock, _quiet_skimage():
            try:
                for size in sizes:
                    detector.prepare(0, input_size=(size, size))
                    faces = self.analysis.get(bgr)
                    if faces:
                        break
            finally:
                detector.prepare(0, input_size=(self.det_size, self.det_size))
        return faces

    def detect(self, image: ImageInput, retry: bool = False) -> list[Face]:
        """All faces of a project image (path, PIL, RGB array, tensor); `retry`: InfiniteYou's 640 → 320 → 160."""
        return self.get(to_bgr(image), INFINITEYOU_DET_SIZES if retry else None)

    def largest_face(self, image: ImageInput | np.ndarray, retry: bool = False, *, bgr: bool = False,
                     name: str = "image", hint: str = "pass a photo with one clearly visible, roughly frontal face") -> Face:
        """The face upstream keeps: the largest box. `bgr=True`: `image` is already a BGR array."""
        faces = self.get(image, INFINITEYOU_DET_SIZES if retry else None) if bgr else self.detect(image, retry)
        if not faces:
            raise NoFaceError(f"{name}: no face found; {hint}")
        return largest(faces)

    def embed_crops(self, bgr_crops: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """The pack's recogniser on aligned BGR crops [N, 112, 112, 3] → raw embeddings [N, 512] (insightface's
        `get_feat`: RGB, (x − 127.5) / 127.5)."""
        model = self.recognition
        if model is None:
            raise StyleIDError(f"{self.model_dir}: no recognition model loaded; build FaceApp with modules including 'recognition'")
        crops = [np.ascontiguousarray(c) for c in bgr_crops]
        return np.asarray(model.get_feat(crops), np.float32).reshape(len(crops), -1)
