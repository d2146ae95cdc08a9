"""`--protocol consisid`: ConsisID's FaceSim-Arc, the identity number video papers publish, from the same run.

ConsisID's `eval/get_facesim_fid.py` (and OpenS2V-Eval's `get_facesim.py`, which follows it) scores a clip so:
an insightface pack (antelopev2) prepared at det size 320; per image, the largest detected face (box area,
last of a stable sort), and when none is found the same search on the image with a 1.25× grey (128) border
added on every side; the pack's ArcFace embedding of that face; per frame the cosine to the reference's,
clipped at 0; frames without a face are left out; a clip's score is the mean over its frames, 0.0 when no
frame had a face. Frames are sampled with the same `linspace` as ours (ConsisID N = 16; OpenS2V-Eval's
FaceSim-Arc is the same computation with N = 32: `--frames 32`; `consisid=PACK` takes another pack folder,
such as the one a benchmark ships, since `FaceAnalysis(root=...)` otherwise means buffalo_l). Two deliberate
differences, both about reading pixels, not the algorithm: frames are counted and decoded with PyAV (OpenCV's
CAP_PROP_FRAME_COUNT is container metadata, which can be wrong), and a reference photo is turned upright by
its EXIF orientation as everywhere in this toolkit. The reference photo must have a face (the script stops).

FaceSim-Cur (CurricularFace IR-101, `glint360k_curricular_face_r101_backbone.bin`) is not computed. ConsisID
builds it with its own `get_model('IR_101')` (its own module names, RGB input, a bare state dict), while our
IR loader (baselines/adaface.py) reads AdaFace's Lightning checkpoints with AdaFace's block layout and BGR
input. Whether the two layouts map key for key cannot be checked without the weights, which cannot be
downloaded here, and a number that only looks like the published one is worse than none.
"""
from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import Arg, StyleIDError
from ..files.images import load_image
from ..files.video import Frame

NAME = "FaceSim-Arc (ConsisID)"
DET_SIZE = 320  # ConsisID: face_arc_model.prepare(ctx_id=0, det_size=(320, 320))
PAD_SCALE = 1.25  # the retry's border: 0.25 × height above and below, 0.25 × width left and right
PAD_VALUE = 128  # grey
PROTOCOLS = ("consisid",)


@dataclass(frozen=True)
class ProtocolSpec:
    name: str
    key: str
    source: str


def pad_grey(bgr: np.ndarray, scale: float = PAD_SCALE) -> np.ndarray:
    """The image with a grey border of (scale − 1) × its height / width on each side."""
    h, w = bgr.shape[:2]
    top, left = int(h * (scale - 1.0)), int(w * (scale - 1.0))
    out = np.full((h + 2 * top, w + 2 * left, 3), PAD_VALUE, np.uint8)
    out[top:top + h, left:left + w] = bgr
    return out


def parse_protocol(text: str) -> tuple[str, str]:
    """`consisid` or `consisid=PACK` (an insightface pack folder) → (protocol, pack)."""
    name, _, pack = str(text).partition("=")
    if name.strip().lower() not in PROTOCOLS:
        raise StyleIDError("{protocol}: known protocols are {known} (consisid=PACK for another insightface pack folder)",
                           param="protocol", protocol=Arg("protocol", text), known=", ".join(PROTOCOLS))
    return name.strip().lower(), pack.strip() or "antelopev2"


class ConsisIDModel:
    """The protocol's front end as a score model: `embed(items)` → unit embeddings and "ok" / "skipped" (no face)."""

    def __init__(self, pack: str = "antelopev2", device: torch.device | str | None = None) -> None:
        from ..faces.insightface_app import FaceApp, pack_dir

        folder = pack_dir(pack)
        self.app = FaceApp(folder, device=str(device) if device is not None else "cpu", det_size=DET_SIZE)
        if self.app.recognition is None:
            raise StyleIDError(f"{self.app.model_dir}: the pack has no recognition model; put glintr100.onnx there")
        files = sorted(p.name for p in Path(folder).glob("*.onnx"))
        self.spec = ProtocolSpec(NAME, f"consisid:{Path(folder).resolve()}:{':'.join(files)}", str(pack))
        self.embedding_dim: int | None = None
        self.precision = None

    def embedding(self, rgb: np.ndarray) -> np.ndarray | None:
        """The ArcFace embedding of the largest face (retrying on the padded image), None when there is none."""
        from ..faces.insightface_app import largest

        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        faces = self.app.get(bgr)
        if not faces:
            faces = self.app.get(pad_grey(bgr))
        if not faces:
            return None
        return np.asarray(largest(faces).embedding, np.float32)

    def embed(self, items: Sequence[Path | Frame], pool: ThreadPoolExecutor | None = None) -> tuple[torch.Tensor, list[str]]:
        rows, status = [], []
        for item in items:
            image = item.image if isinstance(item, Frame) else load_image(item)
            e = self.embedding(np.asarray(image))
            rows.append(e)
            status.append("ok" if e is not None else "skipped")
        dim = next((len(e) for e in rows if e is not None), self.embedding_dim or 512)
        self.embedding_dim = dim
        z = torch.stack([torch.from_numpy(e) if e is not None else torch.full((dim,), float("nan")) for e in rows])
        return torch.nn.functional.normalize(z, dim=-1), status  # insightface's embedding is raw; cosine needs unit norm


def check_references(names: Sequence[str], status: Sequence[str], used: set[int] | None = None) -> None:
    """ConsisID stops when the reference photo has no face: so does the protocol."""
    missing = [names[i] for i, s in enumerate(status) if s == "skipped" and (used is None or i in used)]
    if missing:
        raise StyleIDError(f"{missing[0]}: no face found in this reference by the insightface pack (det size {DET_SIZE}, "
                           "then a 1.25× grey border); the ConsisID protocol needs a face in every reference")


def cache_setting() -> str:
    return f"protocol=consisid+det={DET_SIZE}+pad={PAD_SCALE}"
