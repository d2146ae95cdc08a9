"""A tiny deterministic insightface model pack (SCRFD-layout detector + ArcFace-layout recogniser) that
insightface's own `FaceAnalysis` loads, so the antelopev2 / buffalo_l code paths run offline in seconds.

insightface routes an .onnx file by its inputs and outputs only: 9 outputs → SCRFD (score, bbox, kps × strides
8/16/32, two anchors per cell, rows ordered anchor-fastest, then x, then y), a square ≥112 input with one
output → ArcFace. The detector here is a patch convolution per stride whose score map is a Gaussian bump at
chosen anchor centres (*detector-input* pixels, i.e. after insightface's resize to `det_size` and top-left
zero padding) on a bias of −12 (never fires), and whose box / keypoint heads are constant biases: the faces it
finds are known in closed form. With `gate` the score also follows the mean brightness of the anchor's
patch (+gate on white, −gate on the black padding), which makes detection depend on image content (used to
exercise InfiniteYou's 640 → 320 → 160 retry). The recogniser is conv → ReLU → flatten → linear, spatially
sensitive so misaligned or channel-swapped crops change its output.

Defaults suit `skimage.data.astronaut()` (512²) at det_size 640: face A (stride 16, anchor (272, 144), score
≈ 0.958, box ≈ [172.8, 55.0, 272.6, 189.4] on the real face) and a small face B on the helmet (stride 32,
anchor (512, 480), score ≈ 0.868) that the largest-face rule must skip.
"""
from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

STRIDES = (8, 16, 32)
DETECTOR_FILE = "det_tiny_scrfd.onnx"
RECOGNIZER_FILE = "w600k_tiny.onnx"
BASE_LOGIT = -12.0


@dataclass(frozen=True)
class Target:
    """One face the detector reports: at anchor (cx, cy) of `stride`, in detector-input pixels."""

    stride: int
    cx: float
    cy: float
    logit: float  # peak score logit (before the gate)
    box: tuple[float, float, float, float]  # left, top, right, bottom distances in stride units
    kps: tuple[tuple[float, float], ...]  # 5 × (dx, dy) in stride units


ASTRONAUT_TARGETS = (
    Target(16, 272.0, 144.0, 3.0, (3.5, 4.7, 4.3, 5.8),
           ((-1.06, -0.80), (1.83, -0.88), (0.34, 0.84), (-0.83, 2.41), (1.67, 2.33))),
    Target(32, 512.0, 480.0, 1.5, (1.0, 1.0, 1.0, 1.0),
           ((-0.4, -0.3), (0.4, -0.3), (0.0, 0.1), (-0.3, 0.5), (0.3, 0.5))),
)


def _const(name: str, value, dtype=np.float32):
    from onnx import numpy_helper

    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def build_detector(path: str | Path, targets: tuple[Target, ...] = ASTRONAUT_TARGETS, gate: float = 0.0, seed: int = 0) -> Path:
    """Write the SCRFD-layout detector to `path` (opset 13, dynamic H×W input)."""
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(seed)
    by_stride = {t.stride: t for t in targets}
    if len(by_stride) != len(targets):
        raise ValueError("one target per stride")
    x = "input.1"
    inits = [_const("zero", [0.0]), _const("one", [1.0]), _const("ax2", 2, np.int64), _const("ax3", 3, np.int64),
             _const("c0", [0], np.int64), _const("c1", [1], np.int64)]
    # pixel-index maps of the input, [1, 1, H, W]: cumulative sums of a ones map
    nodes = [helper.make_node("Slice", [x, "c0", "c1", "c1"], ["chan0"]),
             helper.make_node("Mul", ["chan0", "zero"], ["zeros"]),
             helper.make_node("Add", ["zeros", "one"], ["ones"]),
             helper.make_node("CumSum", ["ones", "ax3"], ["xcum"]),
             helper.make_node("CumSum", ["ones", "ax2"], ["ycum"]),
             helper.make_node("Sub", ["xcum", "one"], ["xmap"]),
             helper.make_node("Sub", ["ycum", "one"], ["ymap"])]
    outputs: dict[str, list] = {"score": [], "bbox": [], "kps": []}
    for s in STRIDES:
        t, p = by_stride.get(s), f"s{s}"
        weight = rng.normal(0, 0.005, (2, 3, s, s)) + gate / (3 * s * s)
        inits += [_const(f"{p}_sw", weight), _const(f"{p}_sb", [BASE_LOGIT] * 2)]
        nodes.append(helper.make_node("Conv", [x, f"{p}_sw", f"{p}_sb"], [f"{p}_logit0"], kernel_shape=[s, s], strides=[s, s]))
        logit = f"{p}_logit0"
        if t is not None:  # Gaussian bump (sigma = s/4) at the anchor centre, on anchor 0 only
            inits += [_const(f"{p}_start", [0, 0], np.int64), _const(f"{p}_end", [1 << 30, 1 << 30], np.int64),
                      _const(f"{p}_axes", [2, 3], np.int64), _const(f"{p}_step", [s, s], np.int64),
                      _const(f"{p}_cx", [t.cx]), _const(f"{p}_cy", [t.cy]),
                      _const(f"{p}_k", [-1.0 / (2.0 * (s / 4.0) ** 2)]), _const(f"{p}_amp", [t.logit - BASE_LOGIT])]
            nodes += [
                helper.make_node("Slice", ["xmap", f"{p}_start", f"{p}_end", f"{p}_axes", f"{p}_step"], [f"{p}_xs"]),
                helper.make_node("Slice", ["ymap", f"{p}_start", f"{p}_end", f"{p}_axes", f"{p}_step"], [f"{p}_ys"]),
                helper.make_node("Sub", [f"{p}_xs", f"{p}_cx"], [f"{p}_dx"]),
                helper.make_node("Sub", [f"{p}_ys", f"{p}_cy"], [f"{p}_dy"]),
                helper.make_node("Mul", [f"{p}_dx", f"{p}_dx"], [f"{p}_dx2"]),
                helper.make_node("Mul", [f"{p}_dy", f"{p}_dy"], [f"{p}_dy2"]),
                helper.make_node("Add", [f"{p}_dx2", f"{p}_dy2"], [f"{p}_d2"]),
                helper.make_node("Mul", [f"{p}_d2", f"{p}_k"], [f"{p}_e"]),
                helper.make_node("Exp", [f"{p}_e"], [f"{p}_g"]),
                helper.make_node("Mul", [f"{p}_g", f"{p}_amp"], [f"{p}_bump"]),
                helper.make_node("Mul", [f"{p}_bump", "zero"], [f"{p}_nobump"]),
                helper.make_node("Concat", [f"{p}_bump", f"{p}_nobump"], [f"{p}_bumps"], axis=1),
                helper.make_node("Add", [f"{p}_logit0", f"{p}_bumps"], [f"{p}_logit"]),
            ]
            logit = f"{p}_logit"
        nodes.append(helper.make_node("Sigmoid", [logit], [f"{p}_score"]))
        box = np.tile(np.asarray(t.box if t else (1.0,) * 4, np.float32), 2)
        kps = np.tile(np.asarray(t.kps if t else ((0.0, 0.0),) * 5, np.float32).reshape(-1), 2)
        inits += [_const(f"{p}_bw", np.zeros((8, 3, s, s))), _const(f"{p}_bb", box),
                  _const(f"{p}_kw", np.zeros((20, 3, s, s))), _const(f"{p}_kb", kps)]
        nodes += [helper.make_node("Conv", [x, f"{p}_bw", f"{p}_bb"], [f"{p}_bbox"], kernel_shape=[s, s], strides=[s, s]),
                  helper.make_node("Conv", [x, f"{p}_kw", f"{p}_kb"], [f"{p}_kps"], kernel_shape=[s, s], strides=[s, s])]
        for comp, width in (("score", 1), ("bbox", 4), ("kps", 10)):
            inits.append(_const(f"{p}_{comp}_shape", [-1, width], np.int64))
            nodes += [helper.make_node("Transpose", [f"{p}_{comp}"], [f"{p}_{comp}_t"], perm=[0, 2, 3, 1]),
                      helper.make_node("Reshape", [f"{p}_{comp}_t", f"{p}_{comp}_shape"], [f"{comp}_{s}"])]
            outputs[comp].append(helper.make_tensor_value_info(f"{comp}_{s}", TensorProto.FLOAT, [f"n{s}", width]))
    for i, node in enumerate(nodes):
        node.name = f"det_{i}"
    graph = helper.make_graph(nodes, "tiny_scrfd", [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, 3, "h", "w"])],
                              outputs["score"] + outputs["bbox"] + outputs["kps"], initializer=inits)
    return _save(graph, path)


def build_recognizer(path: str | Path, seed: int = 1, size: int = 112, dim: int = 512, channels: int = 8, k: int = 8) -> Path:
    """Write the ArcFace-layout recogniser ([N, 3, 112, 112] → [N, 512]) to `path`."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(seed)
    flat = channels * (size // k) ** 2
    inits = [_const("r_cw", rng.normal(0, 1.0 / np.sqrt(3 * k * k), (channels, 3, k, k))),
             _const("r_cb", rng.normal(0, 0.1, channels)),
             _const("r_fw", rng.normal(0, 1.0 / np.sqrt(flat), (flat, dim))),
             _const("r_fb", rng.normal(0, 0.01, dim))]
    # node names matter: insightface assumes built-in normalisation when early nodes are named Sub*/Mul*
    nodes = [helper.make_node("Conv", ["input.1", "r_cw", "r_cb"], ["r_c"], kernel_shape=[k, k], strides=[k, k], name="rec_conv"),
             helper.make_node("Relu", ["r_c"], ["r_a"], name="rec_relu"),
             helper.make_node("Flatten", ["r_a"], ["r_f"], axis=1, name="rec_flat"),
             helper.make_node("Gemm", ["r_f", "r_fw", "r_fb"], ["embedding"], name="rec_fc")]
    graph = helper.make_graph(nodes, "tiny_arcface",
                              [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["N", 3, size, size])],
                              [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", dim])], initializer=inits)
    return _save(graph, path)


def _save(graph, path: str | Path) -> Path:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="styleid-tiny")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return Path(path)


def build_pack(folder: str | Path, targets: tuple[Target, ...] = ASTRONAUT_TARGETS, gate: float = 0.0) -> Path:
    """Write a pack (detector + recogniser) into `folder` (created); returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    build_detector(folder / DETECTOR_FILE, targets, gate=gate)
    build_recognizer(folder / RECOGNIZER_FILE)
    return folder


@functools.lru_cache(maxsize=None)
def tiny_pack(kind: str = "astronaut") -> Path:
    """A pack built once per process in a temporary folder (removed at exit).

    "astronaut": `ASTRONAUT_TARGETS`; "gated": face A only, firing only where the image under its anchor is
    bright (on astronaut-sized photos at det_size 640 it sees the dark top-left, at 320 the lower right)."""
    root = Path(tempfile.mkdtemp(prefix="styleid-insightface-"))
    atexit.register(shutil.rmtree, root, True)
    if kind == "astronaut":
        return build_pack(root / "models" / "tinypack")
    if kind == "gated":
        face = ASTRONAUT_TARGETS[0]
        gated = Target(face.stride, face.cx, face.cy, -1.0, face.box, face.kps)
        return build_pack(root / "models" / "tinygated", (gated,), gate=8.0)
    raise ValueError(f"kind must be 'astronaut' or 'gated', got {kind!r}")
