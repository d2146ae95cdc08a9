"""Videos the tests make with PyAV: frames that differ from each other, any codec/container, a VFR clip."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image


def moving_frames(base: Image.Image, n: int, size: int = 96) -> list[np.ndarray]:
    """n RGB frames [size, size, 3]: a crop of `base` sliding and zooming, so every frame is different."""
    w, h = base.size
    out = []
    for i in range(n):
        side = int(min(w, h) * (0.7 + 0.2 * i / max(n - 1, 1)))
        x, y = (w - side) * i // max(n - 1, 1) // 3, (h - side) // 4
        out.append(np.asarray(base.crop((x, y, x + side, y + side)).resize((size, size)).convert("RGB")))
    return out


def write_video(path: Path, frames: Sequence[np.ndarray], codec: str = "libx264", fps: int = 8,
                times: Sequence[float] | None = None, gop: int = 4, options: dict | None = None) -> Path:
    """Encode RGB frames; `times` (seconds) gives each frame its own presentation time (a VFR clip)."""
    import av

    path = Path(path)
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream(codec, rate=fps)
        h, w = frames[0].shape[:2]
        stream.width, stream.height = w, h
        if codec == "gif":
            stream.pix_fmt = "rgb8"
        elif codec in ("libx264", "mpeg4", "libvpx", "libvpx-vp9"):
            stream.pix_fmt = "yuv420p"
        if codec != "gif":
            stream.codec_context.gop_size = gop
        if options:
            stream.options = options
        tb = Fraction(1, 1000) if times is not None else Fraction(1, fps)
        stream.codec_context.time_base = tb
        for i, arr in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
            frame.pts = int(round(times[i] * 1000)) if times is not None else i
            frame.time_base = tb
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def decode_all(path: Path) -> list[np.ndarray]:
    """Every frame, decoded sequentially (decoders output presentation order): what the sampled reader must match."""
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
