"""Face detection, 5-point alignment and a differentiable face crop.

Detection runs once, without gradients, on real photos (the reference). Generated images are then
cropped with the *same normalised* similarity transform through `affine_grid`/`grid_sample`, so the
identity loss stays differentiable w.r.t. the generated pixels at any resolution.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..devices import resolve_device
from ..errors import Arg, NoFaceError, StyleIDError, reason
from ..hub.resolve import facexlib_weights_dir, offline
from ..files.images import ImageInput, load_image
from ..options import DEFAULT_DETECTOR, DETECTORS, OFFLINE_DETECTOR
from ..files.safeload import load_weights_only


# insightface's ArcFace template for 112x112 crops: eyes, nose tip, mouth corners.
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
) / 112.0
# A looser, FFHQ-like framing (hair and chin inside) for CLIP-based encoders: the released StyleID
# model expects "a rough crop around the face", not ArcFace's tight crop.
STYLEID_TEMPLATE = (ARCFACE_TEMPLATE - 0.5) * 0.6 + np.array([0.5, 0.5])
TEMPLATES = {"arcface": ARCFACE_TEMPLATE, "styleid": STYLEID_TEMPLATE}

RETINAFACE_URL = "https://github.com/xinntao/facexlib/releases/download/v0.1.0/detection_Resnet50_Final.pth"


@dataclass
class Face:
    box: np.ndarray  # [4] x1, y1, x2, y2 in pixels
    landmarks: np.ndarray  # [5, 2]: left eye, right eye, nose, left mouth corner, right mouth corner
    score: float

    @property
    def area(self) -> float:
        return float(max(self.box[2] - self.box[0], 0) * max(self.box[3] - self.box[1], 0))


@functools.lru_cache(maxsize=4)
def _retinaface(model_rootpath: str | None, device: str):
    from facexlib.detection.retinaface import RetinaFace

    folder = facexlib_weights_dir(model_rootpath)
    path = folder / "detection_Resnet50_Final.pth"
    if not path.exists():
        if offline():
            raise StyleIDError("RetinaFace weights not found at {path} and downloads are off; put detection_Resnet50_Final.pth "
                               "there ({root}), use {mtcnn}, or {center}", path=path, root=Arg("model_rootpath"),
                               mtcnn=Arg("detector", OFFLINE_DETECTOR), center=Arg("crop", "center"))
        try:
            from facexlib.utils import load_file_from_url

            path = Path(load_file_from_url(RETINAFACE_URL, model_dir="facexlib/weights", save_dir=str(folder)))
        except Exception as err:
            raise StyleIDError("could not download the RetinaFace weights ({why}); use {mtcnn} or {center}", why=reason(err),
                               mtcnn=Arg("detector", OFFLINE_DETECTOR), center=Arg("crop", "center")) from err
    state = load_weights_only(path, "RetinaFace checkpoint")
    if not isinstance(state, dict):
        raise StyleIDError(f"{path}: not a RetinaFace state dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    model = RetinaFace(network_name="resnet50", half=False, device=torch.device(device))
    model.load_state_dict(state, strict=True)
    return model.eval().to(device)


@functools.lru_cache(maxsize=2)
def _mtcnn(device: str):
    try:
        from facenet_pytorch import MTCNN
    except ImportError:
        raise StyleIDError("the mtcnn detector needs facenet-pytorch (pip install --no-deps facenet-pytorch)") from None
    return MTCNN(keep_all=True, device=device)


def detect_faces(
    image: ImageInput,
    detector: str = DEFAULT_DETECTOR,
    model_rootpath: str | None = None,
    device: str | torch.device | None = None,
    min_score: float = 0.8,
) -> list[Face]:
    """All faces in an image, largest first. Not differentiable (numpy / cv2 preprocessing)."""
    if detector not in DETECTORS:
        raise StyleIDError(f"detector must be one of {', '.join(DETECTORS)}, got {detector!r}")
    rgb = np.asarray(load_image(image))
    dev = str(resolve_device(device))
    faces: list[Face] = []
    if detector == DEFAULT_DETECTOR:  # retinaface (facexlib); else mtcnn
        model = _retinaface(model_rootpath, dev)
        with torch.no_grad():
            dets = model.detect_faces(rgb[:, :, ::-1].copy(), conf_threshold=min_score)
        for det in np.asarray(dets).reshape(-1, 15):
            faces.append(Face(det[:4].astype(np.float64), det[5:15].reshape(5, 2).astype(np.float64), float(det[4])))
    else:
        boxes, probs, points = _mtcnn(dev).detect(rgb, landmarks=True)
        if boxes is not None:
            for box, prob, pts in zip(boxes, probs, points):
                if prob is not None and float(prob) >= min_score:
                    faces.append(Face(np.asarray(box, np.float64), np.asarray(pts, np.float64), float(prob)))
    return sorted(faces, key=lambda f: f.area, reverse=True)


def no_face_error(name: object) -> NoFaceError:
    """The one wording of "no face in this image", with its fix (the centre crop needs no face)."""
    return NoFaceError("{name}: no face found; use {fix} (or a clearer, larger face)", name=name, fix=Arg("crop", "center"))


def largest_face(
    image: ImageInput,
    detector: str = DEFAULT_DETECTOR,
    model_rootpath: str | None = None,
    name: str = "image",
    hint: str | None = None,
) -> Face:
    """The largest face, or a NoFaceError naming the image and what the caller can do instead
    (default: the centre crop, which needs no face)."""
    faces = detect_faces(image, detector=detector, model_rootpath=model_rootpath)
    if not faces:
        if hint is not None:
            raise NoFaceError(f"{name}: no face found; {hint}")
        raise no_face_error(name)
    return faces[0]


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping src → dst (Umeyama).
    Returns a 3x3 matrix acting on homogeneous column vectors."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s_c, d_c = src - mu_s, dst - mu_d
    cov = d_c.T @ s_c / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1, 1] = -1
    rot = u @ d @ vt
    var_s = (s_c**2).sum() / len(src)
    scale = (sig * np.diag(d)).sum() / max(var_s, 1e-12)
    m = np.eye(3)
    m[:2, :2] = scale * rot
    m[:2, 2] = mu_d - scale * rot @ mu_s
    return m


@dataclass
class FaceRegion:
    """Where the face is, in coordinates normalised by image width/height (resolution-free).

    landmarks: [5,2] (one region for the whole batch) or [B,5,2] (one per sample)."""

    landmarks: np.ndarray

    @classmethod
    def from_landmarks(cls, landmarks: np.ndarray, image_size: tuple[int, int]) -> "FaceRegion":
        w, h = image_size
        return cls(np.asarray(landmarks, np.float64) / np.array([w, h], np.float64))

    @classmethod
    def from_box(cls, box: Sequence[float], image_size: tuple[int, int]) -> "FaceRegion":
        """A face box (x1, y1, x2, y2 pixels) without landmarks: place the ArcFace template inside it."""
        x1, y1, x2, y2 = map(float, box)
        if x2 <= x1 or y2 <= y1:
            raise StyleIDError(f"face box must be x1,y1,x2,y2 with x2>x1 and y2>y1, got {tuple(box)}")
        pts = ARCFACE_TEMPLATE * np.array([x2 - x1, y2 - y1]) + np.array([x1, y1])
        return cls.from_landmarks(pts, image_size)

    @classmethod
    def detect(cls, image: ImageInput, detector: str = DEFAULT_DETECTOR, model_rootpath: str | None = None, name: str = "reference") -> "FaceRegion":
        pil = load_image(image)
        return cls.from_landmarks(largest_face(pil, detector, model_rootpath, name).landmarks, pil.size)

    def theta(self, image_hw: tuple[int, int], out_size: int, template: str = "styleid", batch: int = 1) -> torch.Tensor:
        """affine_grid matrices [B,2,3] mapping the output crop to the input image."""
        tpl = TEMPLATES[template] * out_size
        h, w = image_hw
        lms = self.landmarks if self.landmarks.ndim == 3 else np.broadcast_to(self.landmarks, (batch, 5, 2))
        if len(lms) != batch:
            raise StyleIDError(f"face region has {len(lms)} landmark sets for a batch of {batch}")
        out_from_norm = np.array([[out_size / 2, 0, out_size / 2], [0, out_size / 2, out_size / 2], [0, 0, 1]])
        norm_from_px = np.array([[2 / w, 0, -1], [0, 2 / h, -1], [0, 0, 1]])
        thetas = []
        for pts in lms:
            px_from_out = similarity_transform(tpl, pts * np.array([w, h]))
            thetas.append((norm_from_px @ px_from_out @ out_from_norm)[:2])
        return torch.as_tensor(np.stack(thetas), dtype=torch.float32)

    def crop(self, images: torch.Tensor, out_size: int, template: str = "styleid") -> torch.Tensor:
        """Differentiable aligned crop of [B,3,H,W] images → [B,3,out,out]."""
        b, _, h, w = images.shape
        theta = self.theta((h, w), out_size, template, batch=b).to(images.device, images.dtype)
        grid = F.affine_grid(theta, [b, images.shape[1], out_size, out_size], align_corners=False)
        # grid_sample reads 4 pixels per output pixel: when the face spans many more input pixels than
        # the crop has, shrink the whole image first (antialiased) so the crop does not alias.
        px_per_out = float(np.sqrt(abs(np.linalg.det(theta[0, :, :2].cpu().numpy())))) * max(h, w) / out_size
        src = images
        if px_per_out > 2.0:
            src = F.interpolate(images, scale_factor=1.0 / px_per_out, mode="bilinear", antialias=True, align_corners=False)
        return F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)


def crop_faces(
    images: torch.Tensor,
    out_size: int,
    detector: str = DEFAULT_DETECTOR,
    model_rootpath: str | None = None,
    template: str = "styleid",
    names: Sequence[str] | None = None,
) -> torch.Tensor:
    """Detect the largest face in each image and return aligned crops (detection without gradient)."""
    regions = []
    for i, img in enumerate(images):
        name = names[i] if names else f"image {i}"
        pil = load_image(img.detach().clamp(0, 1).cpu())
        regions.append(FaceRegion.detect(pil, detector=detector, model_rootpath=model_rootpath, name=name).landmarks)
    return FaceRegion(np.stack(regions)).crop(images, out_size, template)
