"""Face-recognition embeddings that InstantID, InfiniteYou and IP-Adapter FaceID are conditioned on.

Each adapter was trained on one 512-d ArcFace embedding of the reference face, from a specific detector,
alignment and model; anything else degrades identity. The upstream front ends, reproduced here:

- InstantID (antelopev2) and IP-Adapter FaceID (buffalo_l): insightface's `FaceAnalysis` end to end — SCRFD at
  det_size 640, the largest face, `norm_crop` to 112 px, the pack's recogniser, *raw* `face.embedding`
  (`InsightFaceEmbedder`, on `styleid_guidance.faces.insightface_app.FaceApp`).
- InfiniteYou: the same antelopev2 SCRFD (640, then 320, then 160 when nothing is found), the largest face,
  `norm_crop` on the BGR photo, and facexlib's ArcFace IR-SE50 on the BGR crop in [−1, 1], which L2-normalises
  (`ArcFaceEmbedder`).
- Offline or without a pack: facexlib RetinaFace or MTCNN (which ships its weights) give the same 5 points;
  pass `detector="retinaface"` / `"mtcnn"`. `ONNXFaceEmbedder` runs a recognition .onnx on those crops.
- Tiny mode (`FaceEmbedder.tiny()`, from `styleid_guidance.tiny.face_embedder`): a seeded random convnet on the same
  crop, so the tiny stylizers run offline and deterministically.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch
from torch import nn

from styleid_guidance.errors import StyleIDError
from styleid_guidance.faces.detection import ARCFACE_TEMPLATE, largest_face, similarity_transform
from styleid_guidance.options import DEFAULT_DETECTOR, OFFLINE_DETECTOR, detector_for
from styleid_guidance.files.images import ImageInput, load_image

if TYPE_CHECKING:
    from styleid_guidance.faces.insightface_app import FaceApp

ALIGNED_SIZE = 112
RECOGNITION_FILES = ("glintr100.onnx", "w600k_r50.onnx")  # antelopev2, buffalo_l


def align_face(image: ImageInput, landmarks: np.ndarray, size: int = ALIGNED_SIZE) -> np.ndarray:
    """The ArcFace-aligned `size`² RGB crop (uint8 HWC): insightface's `norm_crop` (sizes that are multiples of
    112 or 128, as insightface allows), else the same template scaled to `size`."""
    rgb = np.asarray(load_image(image))
    if size % 112 == 0 or size % 128 == 0:
        from styleid_guidance.faces.insightface_app import norm_crop

        return norm_crop(rgb, landmarks, size)
    matrix = similarity_transform(np.asarray(landmarks, np.float64), ARCFACE_TEMPLATE * size)[:2]
    return cv2.warpAffine(rgb, matrix, (size, size), borderValue=0.0)


NO_FACE_HINT = "pass a photo with one clearly visible, roughly frontal face"


@dataclass
class FaceInfo:
    """What the identity adapters need from the reference photo."""

    embedding: torch.Tensor  # [512] float32
    landmarks: np.ndarray  # [5, 2] pixels in the analysed image
    box: np.ndarray  # [4] x1, y1, x2, y2


class FaceEmbedder:
    """Detect the largest face, align it to 112 px and embed it. Subclasses implement `embed_aligned`.

    Detection: `face_app` (insightface, as upstream; `retry`: InfiniteYou's 640 → 320 → 160) when given, else
    `detector` ("retinaface" / "mtcnn")."""

    embedding_dim = 512
    normalized = False

    def __init__(self, detector: str | None = DEFAULT_DETECTOR, model_rootpath: str | None = None,
                 face_app: FaceApp | None = None, retry: bool = False):
        self.detector = detector_for(detector)
        self.model_rootpath = model_rootpath
        self.face_app = face_app
        self.retry = retry

    def embed_aligned(self, crops: np.ndarray) -> torch.Tensor:
        """crops: uint8 [N, 112, 112, 3] RGB → float32 [N, 512]."""
        raise NotImplementedError

    @classmethod
    def tiny(cls, dim: int = 512, seed: int = 0, detector: str = OFFLINE_DETECTOR, **kwargs: Any) -> "FaceEmbedder":
        """A seeded random stand-in for the face models (offline, deterministic; see `styleid_guidance.tiny.face_embedder`)."""
        from styleid_guidance.tiny.face_embedder import TinyFaceEmbedder

        return TinyFaceEmbedder(dim=dim, seed=seed, detector=detector, **kwargs)

    def _insightface_face(self, bgr: np.ndarray, name: str):
        return self.face_app.largest_face(bgr, self.retry, bgr=True, name=name, hint=NO_FACE_HINT)

    def _embed_insightface(self, bgr: np.ndarray, face: Any) -> torch.Tensor:
        from styleid_guidance.faces.insightface_app import norm_crop

        crop = norm_crop(bgr, face.kps, ALIGNED_SIZE)  # BGR, as upstream crops the cv2 image
        return self.embed_aligned(np.ascontiguousarray(crop[None, :, :, ::-1]))[0]

    def detect(self, image: ImageInput, name: str = "face image") -> tuple[np.ndarray, np.ndarray]:
        """(landmarks [5, 2], box [4]) of the face this embedder would use, without embedding it."""
        image = load_image(image)
        if self.face_app is not None:
            from styleid_guidance.faces.insightface_app import to_bgr

            face = self._insightface_face(to_bgr(image), name)
            return np.asarray(face.kps, np.float64), np.asarray(face.bbox, np.float64)
        face = largest_face(image, self.detector, self.model_rootpath, name, hint=NO_FACE_HINT)
        return face.landmarks, face.box

    def __call__(self, image: ImageInput, name: str = "face image") -> FaceInfo:
        image = load_image(image)
        if self.face_app is not None:
            from styleid_guidance.faces.insightface_app import to_bgr

            bgr = to_bgr(image)
            face = self._insightface_face(bgr, name)
            return FaceInfo(self._embed_insightface(bgr, face), np.asarray(face.kps, np.float64), np.asarray(face.bbox, np.float64))
        face = largest_face(image, self.detector, self.model_rootpath, name, hint=NO_FACE_HINT)
        crop = align_face(image, face.landmarks)[None]
        return FaceInfo(self.embed_aligned(crop)[0], face.landmarks, face.box)


class InsightFaceEmbedder(FaceEmbedder):
    """An insightface pack end to end (antelopev2 for InstantID, buffalo_l for IP-Adapter FaceID): what upstream's
    `FaceAnalysis(...).get(bgr)` → largest face → `face.embedding` (raw, not normalised) gives."""

    def __init__(self, face_app: FaceApp, retry: bool = False):
        if face_app.recognition is None:
            raise StyleIDError(f"{face_app.model_dir}: the pack has no recognition model; add its glintr100.onnx / w600k_r50.onnx")
        super().__init__(face_app=face_app, retry=retry)

    @classmethod
    def from_pretrained(cls, pack: str | os.PathLike = "antelopev2", root: str | os.PathLike | None = None, *,
                        device: str | torch.device | None = None, retry: bool = False) -> "InsightFaceEmbedder":
        """`pack`: "antelopev2" / "buffalo_l" (under `root/models/`, default ~/.insightface) or a pack folder."""
        from styleid_guidance.faces.insightface_app import FaceApp

        return cls(FaceApp(pack, root, device=device), retry=retry)

    def _embed_insightface(self, bgr: np.ndarray, face: Any) -> torch.Tensor:
        return torch.from_numpy(np.asarray(face.embedding, np.float32).copy())  # what get() computed on the norm_crop

    def embed_aligned(self, crops: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.face_app.embed_crops(np.asarray(crops)[..., ::-1]))


class ONNXFaceEmbedder(FaceEmbedder):
    """insightface recognition model (antelopev2 `glintr100.onnx`, buffalo_l `w600k_r50.onnx`) on onnxruntime."""

    def __init__(self, model_path: str | os.PathLike, providers: list[str] | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        path = Path(model_path)
        if not path.is_file():
            raise StyleIDError(f"{path}: face recognition model not found; pass the .onnx file of antelopev2 or buffalo_l")
        import onnxruntime as ort

        if providers is None:
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
        try:
            self.session = ort.InferenceSession(str(path), providers=providers)
        except Exception as err:  # corrupt file, not ONNX
            raise StyleIDError(f"{path}: cannot be loaded as an ONNX model ({type(err).__name__}); download it again") from None
        inp = self.session.get_inputs()[0]
        if len(inp.shape) != 4 or inp.shape[1] != 3:
            raise StyleIDError(f"{path}: expects input {inp.shape}, not a face recognition model (N, 3, 112, 112)")
        self.input_name = inp.name
        self.model_path = path

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike = "antelopev2", root: str | os.PathLike | None = None,
                        **kwargs: Any) -> "ONNXFaceEmbedder":
        """`name_or_path`: an .onnx file, a model-pack folder, or a pack name ("antelopev2", "buffalo_l") found as
        `styleid_guidance.faces.insightface_app.pack_dir` finds it (under `root/models/NAME/`)."""
        path = Path(str(name_or_path)).expanduser()
        if path.is_file():
            return cls(path, **kwargs)
        if not path.is_dir() and not str(name_or_path).endswith(".onnx"):
            from styleid_guidance.faces.insightface_app import pack_dir

            path = pack_dir(name_or_path, root)
        if not path.is_dir():
            raise StyleIDError(f"{path}: no such face model file or folder; use antelopev2, buffalo_l or a path to an .onnx file")
        found = [path / f for f in RECOGNITION_FILES if (path / f).is_file()]
        if not found:
            raise StyleIDError(f"{path}: no {' or '.join(RECOGNITION_FILES)} inside; pass the .onnx file")
        return cls(found[0], **kwargs)

    def embed_aligned(self, crops: np.ndarray) -> torch.Tensor:
        x = (crops.astype(np.float32) - 127.5) / 127.5
        (out,) = self.session.run(None, {self.input_name: np.ascontiguousarray(x.transpose(0, 3, 1, 2))})[:1]
        return torch.from_numpy(np.asarray(out, np.float32).reshape(len(crops), -1))


class ArcFaceEmbedder(FaceEmbedder):
    """facexlib ArcFace IR-SE50 (InfiniteYou's identity input); output L2-normalised."""

    normalized = True

    def __init__(self, backbone: nn.Module, device: str | torch.device | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.backbone = backbone.eval()
        self.device = torch.device(device) if device else next(backbone.parameters()).device

    @classmethod
    def from_pretrained(cls, path_or_dir: str | None = None, model_rootpath: str | None = None,
                        device: str | torch.device | None = None, *, detector: str | None = None,
                        face_pack: str | os.PathLike = "antelopev2", insightface_root: str | os.PathLike | None = None,
                        **kwargs: Any) -> "ArcFaceEmbedder":
        """`path_or_dir`: recognition_arcface_ir_se50.pth (default: facexlib's download location). Faces are found as
        InfiniteYou finds them — insightface `face_pack` (antelopev2; under `insightface_root/models/`) at 640,
        then 320, then 160 — unless `detector` ("retinaface" / "mtcnn") is given."""
        from styleid_guidance.baselines.arcface import load_arcface_backbone

        face_app = None
        if detector is None:
            from styleid_guidance.faces.insightface_app import FaceApp

            face_app = FaceApp(face_pack, insightface_root, device=device, modules=("detection",))
        backbone = load_arcface_backbone(path_or_dir, model_rootpath=model_rootpath, device=device)
        return cls(backbone, device=device, detector=detector, model_rootpath=model_rootpath, face_app=face_app,
                   retry=face_app is not None, **kwargs)

    @torch.no_grad()
    def embed_aligned(self, crops: np.ndarray) -> torch.Tensor:
        bgr = torch.from_numpy(np.ascontiguousarray(crops[..., ::-1])).permute(0, 3, 1, 2).float()
        x = (bgr / 255.0 * 2 - 1).to(self.device, next(self.backbone.parameters()).dtype)
        return self.backbone(x).float().cpu()


def load_face_embedder(name: str = "antelopev2", *, root: str | None = None, detector: str | None = None,
                       model_rootpath: str | None = None, device: str | torch.device | None = None) -> FaceEmbedder:
    """The face embedder an adapter expects, found the way upstream finds faces unless `detector` is given.

    "antelopev2" / "buffalo_l" / a pack folder → insightface end to end (`InsightFaceEmbedder`); with `detector`
    ("retinaface" / "mtcnn") → that detector + the pack's recognition .onnx (`ONNXFaceEmbedder`; also for an
    .onnx file). "arcface" (or a .pth) → facexlib IR-SE50 on antelopev2 detections (InfiniteYou) or `detector`.
    "tiny" → the seeded stand-in (MTCNN unless `detector`). `root`: the insightface root (`root/models/<pack>`)."""
    if name == "tiny":
        return FaceEmbedder.tiny(detector=detector_for(detector, tiny=True), model_rootpath=model_rootpath)
    if name == "arcface" or str(name).endswith((".pth", ".pt")):
        return ArcFaceEmbedder.from_pretrained(None if name == "arcface" else name, model_rootpath=model_rootpath,
                                               device=device, detector=detector, insightface_root=root)
    if detector is None and not str(name).endswith(".onnx"):
        return InsightFaceEmbedder.from_pretrained(name, root, device=device)
    return ONNXFaceEmbedder.from_pretrained(name, root=root, detector=detector_for(detector), model_rootpath=model_rootpath)
