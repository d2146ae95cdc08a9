"""Face-recognition embeddings that InstantID and InfiniteYou are conditioned on.

Both adapters were trained on one 512-d ArcFace embedding of the reference face, each from a specific model
and preprocessing; feeding anything else degrades identity. So:

- InstantID: insightface `antelopev2` (`glintr100.onnx`, or `buffalo_l`'s `w600k_r50.onnx`), run with
  onnxruntime on the 112-px ArcFace-aligned RGB crop, (x − 127.5)/127.5, *raw* (un-normalised) output, as
  insightface's `face.embedding` that upstream passes.
- InfiniteYou: facexlib's ArcFace IR-SE50 on the same 112-px aligned crop, but BGR (upstream feeds the cv2
  image) scaled to [−1, 1]; the backbone L2-normalises.
- Tiny mode (`FaceEmbedder.tiny()`, from `styleid_guidance.tiny.faces`): a seeded random convnet on the same crop,
  so the tiny stylizers run offline and deterministically.

Faces are detected with `styleid_guidance.faces.detect_faces` (the 5 landmarks are the same points insightface's
detector gives); the largest face is used.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from styleid_guidance.errors import StyleIDError
from styleid_guidance.faces import ARCFACE_TEMPLATE, largest_face, similarity_transform
from styleid_guidance.images import ImageInput, load_image

ALIGNED_SIZE = 112

# insightface model packs: which recognition model each one holds, and a Hub copy of it.
ONNX_PACKS = {
    "antelopev2": ("glintr100.onnx", ("ByteDance/InfiniteYou", "supports/insightface/models/antelopev2")),
    "buffalo_l": ("w600k_r50.onnx", None),
}
INSIGHTFACE_ROOT = Path(os.environ.get("INSIGHTFACE_HOME", "~/.insightface")).expanduser()


def align_face(image: ImageInput, landmarks: np.ndarray, size: int = ALIGNED_SIZE) -> np.ndarray:
    """The ArcFace-aligned `size`² RGB crop (uint8 HWC), as insightface's `norm_crop`."""
    rgb = np.asarray(load_image(image))
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
    """Detect the largest face, align it to 112 px and embed it. Subclasses implement `embed_aligned`."""

    embedding_dim = 512
    normalized = False

    def __init__(self, detector: str = "retinaface", model_rootpath: str | None = None):
        self.detector = detector
        self.model_rootpath = model_rootpath

    def embed_aligned(self, crops: np.ndarray) -> torch.Tensor:
        """crops: uint8 [N, 112, 112, 3] RGB → float32 [N, 512]."""
        raise NotImplementedError

    @classmethod
    def tiny(cls, dim: int = 512, seed: int = 0, detector: str = "mtcnn", **kwargs: Any) -> "FaceEmbedder":
        """A seeded random stand-in for the face models (offline, deterministic; see `styleid_guidance.tiny.faces`)."""
        from styleid_guidance.tiny.faces import TinyFaceEmbedder

        return TinyFaceEmbedder(dim=dim, seed=seed, detector=detector, **kwargs)

    def __call__(self, image: ImageInput, name: str = "face image") -> FaceInfo:
        image = load_image(image)
        face = largest_face(image, self.detector, self.model_rootpath, name, hint=NO_FACE_HINT)
        crop = align_face(image, face.landmarks)[None]
        return FaceInfo(self.embed_aligned(crop)[0], face.landmarks, face.box)


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
        """`name_or_path`: an .onnx file, a model-pack folder, or a pack name ("antelopev2", "buffalo_l") looked
        up under `root` (insightface layout `root/models/NAME/`, default ~/.insightface) and else fetched from
        the Hub where a copy exists."""
        text = str(name_or_path)
        path = Path(text).expanduser()
        if path.is_file():
            return cls(path, **kwargs)
        if path.is_dir():
            found = [path / f for f, _ in ONNX_PACKS.values() if (path / f).is_file()]
            if not found:
                raise StyleIDError(f"{path}: no {' or '.join(f for f, _ in ONNX_PACKS.values())} inside; pass the .onnx file")
            return cls(found[0], **kwargs)
        if text not in ONNX_PACKS:
            raise StyleIDError(f"{text}: no such face model file or folder; use antelopev2, buffalo_l or a path to an .onnx file")
        filename, hub = ONNX_PACKS[text]
        base = Path(root).expanduser() if root else INSIGHTFACE_ROOT
        for candidate in (base / "models" / text / filename, base / text / filename, base / filename):
            if candidate.is_file():
                return cls(candidate, **kwargs)
        if hub is None:
            raise StyleIDError(
                f"{text}: {filename} not found under {base}/models/{text}; download the insightface {text} pack "
                f"(github.com/deepinsight/insightface releases) there or pass its path"
            )
        from styleid_guidance.hub import resolve_model_dir

        repo, folder = hub
        local = resolve_model_dir(repo, kind=f"{text} face", allow_patterns=(f"{folder}/{filename}",))
        return cls(local / folder / filename, **kwargs)

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
                        device: str | torch.device | None = None, **kwargs: Any) -> "ArcFaceEmbedder":
        from styleid_guidance.arcface import load_arcface_backbone

        return cls(load_arcface_backbone(path_or_dir, model_rootpath=model_rootpath, device=device), device=device, **kwargs)

    @torch.no_grad()
    def embed_aligned(self, crops: np.ndarray) -> torch.Tensor:
        bgr = torch.from_numpy(np.ascontiguousarray(crops[..., ::-1])).permute(0, 3, 1, 2).float()
        x = (bgr / 255.0 * 2 - 1).to(self.device, next(self.backbone.parameters()).dtype)
        return self.backbone(x).float().cpu()


def load_face_embedder(name: str = "antelopev2", *, root: str | None = None, detector: str = "retinaface",
                       model_rootpath: str | None = None, device: str | torch.device | None = None) -> FaceEmbedder:
    """"antelopev2" / "buffalo_l" / an .onnx path → ONNX; "arcface" (or a .pth) → facexlib IR-SE50; "tiny"."""
    if name == "tiny":
        return FaceEmbedder.tiny(detector=detector, model_rootpath=model_rootpath)
    if name == "arcface" or str(name).endswith((".pth", ".pt")):
        return ArcFaceEmbedder.from_pretrained(None if name == "arcface" else name, model_rootpath=model_rootpath,
                                               device=device, detector=detector)
    return ONNXFaceEmbedder.from_pretrained(name, root=root, detector=detector, model_rootpath=model_rootpath)
