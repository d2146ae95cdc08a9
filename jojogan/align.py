"""FFHQ-style face alignment from 5-point landmarks (the crop JoJoGAN / e4e / StyleGAN2 expect).

The FFHQ recipe only needs the two eye centres and the two mouth corners, which every 5-point
detector gives; with them the oriented crop square is the same as the one the upstream dlib code
computes from its 68 landmarks: centre slightly below the eyes, side = max(2 x eye distance,
1.8 x eye-to-mouth distance) x 2, rotated so the eyes are level. Large photos are shrunk first,
the crop is padded by reflection with a blurred, median-tinted border when it leaves the image,
and the quad is resampled to `output_size`.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from styleid_guidance.errors import Arg, NoFaceError, StyleIDError
from styleid_guidance.faces.detection import ARCFACE_TEMPLATE, FaceRegion, largest_face
from styleid_guidance.files.images import ImageInput, load_image
from styleid_guidance.options import DEFAULT_DETECTOR


def ffhq_quad(landmarks: np.ndarray) -> tuple[np.ndarray, float]:
    """Corners (top-left, bottom-left, bottom-right, top-right) of the FFHQ crop and its side length.

    landmarks: [5, 2] (left eye, right eye, nose, left mouth corner, right mouth corner) in pixels.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (5, 2) or not np.isfinite(lm).all():
        raise StyleIDError(f"landmarks must be a finite [5, 2] array, got shape {lm.shape}")
    eye_left, eye_right, _, mouth_left, mouth_right = lm
    eye_avg = (eye_left + eye_right) / 2
    eye_to_eye = eye_right - eye_left
    eye_to_mouth = (mouth_left + mouth_right) / 2 - eye_avg
    # x: the face's horizontal axis, a blend of the eye line and the eye-mouth line turned by 90 deg.
    x = eye_to_eye - np.array([-eye_to_mouth[1], eye_to_mouth[0]])
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.array([-x[1], x[0]])
    c = eye_avg + eye_to_mouth * 0.1
    quad = np.stack([c - x - y, c - x + y, c + x + y, c + x - y])
    return quad, float(np.hypot(*x) * 2)


def ffhq_face_region() -> FaceRegion:
    """Where the face sits in any FFHQ-aligned image (every StyleGAN2 render is one): the 5 landmarks
    of a canonical face carried through the FFHQ crop. Identity losses on generator output use it,
    so they crop the face without running a detector on stylised images."""
    quad, _ = ffhq_quad(ARCFACE_TEMPLATE)
    # the quad's corners (top-left, bottom-left, bottom-right, top-right) are the aligned image's corners
    origin, down, right = quad[0], quad[1] - quad[0], quad[3] - quad[0]
    basis = np.stack([right, down], axis=1)
    return FaceRegion(np.linalg.solve(basis, (ARCFACE_TEMPLATE - origin).T).T)


def _reflect_pad(img: Image.Image, quad: np.ndarray, qsize: float, border: int) -> tuple[Image.Image, np.ndarray]:
    """Pad by reflection where the quad leaves the image, fading the padding to a blurred median colour."""
    from scipy.ndimage import gaussian_filter

    w, h = img.size
    lo, hi = np.floor(quad.min(0)).astype(int), np.ceil(quad.max(0)).astype(int)
    pad = np.maximum([-lo[0] + border, -lo[1] + border, hi[0] - w + border, hi[1] - h + border], 0)
    if pad.max() <= border - 4:
        return img, quad
    left, top, right, bottom = np.maximum(pad, int(np.rint(qsize * 0.3)))
    arr = np.pad(np.float32(img), ((top, bottom), (left, right), (0, 0)), "reflect")
    ph, pw, _ = arr.shape
    yy, xx, _ = np.ogrid[:ph, :pw, :1]
    # 0 inside the original image, rising to 1 at the outer edge of the padding.
    mask = np.maximum(1.0 - np.minimum(np.float32(xx) / left, np.float32(pw - 1 - xx) / right),
                      1.0 - np.minimum(np.float32(yy) / top, np.float32(ph - 1 - yy) / bottom))
    blur = qsize * 0.02
    arr += (gaussian_filter(arr, [blur, blur, 0]) - arr) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    arr += (np.median(arr, axis=(0, 1)) - arr) * np.clip(mask, 0.0, 1.0)
    return Image.fromarray(np.uint8(np.clip(np.rint(arr), 0, 255)), "RGB"), quad + [left, top]


def warp_quad(img: Image.Image, quad: np.ndarray, qsize: float, output_size: int) -> Image.Image:
    quad = quad.copy()
    shrink = int(np.floor(qsize / output_size * 0.5))
    if shrink > 1:  # resample large photos down first so the bilinear quad warp does not alias
        img = img.resize((int(np.rint(img.size[0] / shrink)), int(np.rint(img.size[1] / shrink))), Image.LANCZOS)
        quad /= shrink
        qsize /= shrink
    border = max(int(np.rint(qsize * 0.1)), 3)
    lo, hi = np.floor(quad.min(0)).astype(int), np.ceil(quad.max(0)).astype(int)
    crop = (max(lo[0] - border, 0), max(lo[1] - border, 0), min(hi[0] + border, img.size[0]), min(hi[1] + border, img.size[1]))
    if crop[2] - crop[0] < img.size[0] or crop[3] - crop[1] < img.size[1]:
        img = img.crop(crop)
        quad -= crop[:2]
    img, quad = _reflect_pad(img, quad, qsize, border)
    return img.transform((output_size, output_size), Image.QUAD, (quad + 0.5).flatten().tolist(), Image.BILINEAR)


def align_face(image: ImageInput, output_size: int = 1024, detector: str = DEFAULT_DETECTOR, model_rootpath: str | None = None,
               landmarks: np.ndarray | None = None, name: str | None = None) -> Image.Image:
    """FFHQ-aligned square crop of the largest face. Raises NoFaceError when none is found."""
    img = load_image(image)
    if landmarks is None:
        label = name or (str(image) if isinstance(image, (str, bytes)) or hasattr(image, "__fspath__") else "image")
        try:
            landmarks = largest_face(img, detector, model_rootpath, label).landmarks
        except NoFaceError as err:
            raise NoFaceError("{label}: no face found; use a clearer frontal face, another {detector}, or {align} to use "
                              "the image centre-cropped as is", label=label, detector=Arg("detector"),
                              align=Arg("align", False, flag="--no-align")) from err
    quad, qsize = ffhq_quad(landmarks)
    return warp_quad(img, quad, qsize, output_size)


def center_crop(image: ImageInput, output_size: int) -> Image.Image:
    """The unaligned fallback: largest centred square, resized (for images that are already aligned)."""
    img = load_image(image)
    w, h = img.size
    s = min(w, h)
    box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
    return img.resize((output_size, output_size), Image.LANCZOS, box=box)
