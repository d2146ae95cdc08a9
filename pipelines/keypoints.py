"""The 5-keypoint control image that InstantID's IdentityNet (and InfiniteYou's InfuseNet, given a pose) sees,
drawn by upstream's rule: fixed 4-px limbs and 10-px discs at the generation size.

cv2 is imported when a picture is drawn, not with this module: the FLUX pipeline imports `draw_kps` but
draws only when a pose image is given, and loading cv2 (with its own bundled libraries) is not free.
"""
from __future__ import annotations

import math

import numpy as np
import PIL.Image

KPS_COLORS = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255))


def draw_kps(size: tuple[int, int], landmarks: np.ndarray, stick_width: int = 4, radius: int = 10) -> PIL.Image.Image:
    """IdentityNet's control image: on black, each eye and mouth corner joined to the nose by a thin ellipse in
    that point's colour at 60 %, then a filled disc per keypoint (red, green, blue, yellow, magenta for left
    eye, right eye, nose, left and right mouth corner). `size` is (width, height)."""
    import cv2

    kps = np.asarray(landmarks, np.float64).reshape(5, 2)
    canvas = np.zeros((size[1], size[0], 3), np.float64)
    for a in (0, 1, 3, 4):
        (x0, y0), (x1, y1) = kps[a], kps[2]
        center = (int((x0 + x1) / 2), int((y0 + y1) / 2))
        half_len = int(math.hypot(x1 - x0, y1 - y0) / 2)
        angle = int(math.degrees(math.atan2(y0 - y1, x0 - x1)))
        polygon = cv2.ellipse2Poly(center, (half_len, stick_width), angle, 0, 360, 1)
        cv2.fillConvexPoly(canvas, polygon, KPS_COLORS[a])
    canvas = (canvas * 0.6).astype(np.uint8)
    for (x, y), color in zip(kps, KPS_COLORS):
        cv2.circle(canvas, (int(x), int(y)), radius, color, -1)
    return PIL.Image.fromarray(canvas)


def kps_image(image_size: tuple[int, int], landmarks: np.ndarray, size: tuple[int, int]) -> PIL.Image.Image:
    """`draw_kps` of landmarks found on an `image_size` photo, for an output of `size` (both width, height): the
    photo is taken as centre-cropped to the output's aspect and scaled onto it. Strokes keep upstream's fixed
    pixel sizes (upstream always draws at the generation size); equal sizes give exactly upstream's picture."""
    (sw, sh), (dw, dh) = image_size, size
    if (sw, sh) == (dw, dh):
        return draw_kps(size, landmarks)
    scale = max(dw / sw, dh / sh)
    offset = np.array([(sw - dw / scale) / 2, (sh - dh / scale) / 2])
    return draw_kps(size, (np.asarray(landmarks, np.float64) - offset) * scale)


def resize_and_pad(image: PIL.Image.Image, size: tuple[int, int]) -> PIL.Image.Image:
    """InfiniteYou's pose-photo framing for a (width, height) output: the photo is scaled (LANCZOS) to the output's
    width when the output is portrait or square, else to its height, then centred on white; a photo more
    elongated than that overflows and is cut evenly on both sides. Keypoints are then detected on this image."""
    (w, h), (tw, th) = image.size, size
    nw, nh = (tw, int(tw * (h / w))) if tw <= th else (int(th * (w / h)), th)
    nw, nh = max(nw, 1), max(nh, 1)  # a panorama thinner than one output pixel (upstream would fail)
    canvas = PIL.Image.new("RGB", (tw, th), (255, 255, 255))
    canvas.paste(image.convert("RGB").resize((nw, nh), PIL.Image.LANCZOS), ((tw - nw) // 2, (th - nh) // 2))
    return canvas
