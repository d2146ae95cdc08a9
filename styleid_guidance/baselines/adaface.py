"""The AdaFace baseline (Kim et al., CVPR 2022): its IR backbones and a CPU-safe loader for the public
checkpoints.

The released weights are PyTorch-Lightning `.ckpt` pickles whose `state_dict` holds the backbone under
`model.` and the AdaFace margin head under `head.`. They are read with `torch.load(weights_only=True)`
inside an explicit allow-list of what a Lightning checkpoint legitimately pickles (an argparse
Namespace, numpy scalars/arrays, callback classes used as dict keys, mapped to inert stand-ins); any
other object refuses the file. The network is rebuilt here from AdaFace's description: an input stem,
pre-activation `BasicBlockIR` units in four stride-2 stages and a BN-Dropout-Linear-BN head; the
architecture (IR-18/34/50/101, widths, embedding size) is read off the state dict's shapes.

Input convention (AdaFace's, not insightface's): a 112-px crop aligned to the ArcFace 5-point template,
**BGR**, scaled by `(x/255 - 0.5)/0.5`. `forward` returns the L2-normalised embedding (the norm, AdaFace's
quality proxy, with `return_norm=True`).
"""
from __future__ import annotations

import argparse
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..errors import Arg, StyleIDError

# preferred first when a folder holds several; the paper's Table 1 uses an IR-101 AdaFace
ADAFACE_FILES = (
    "adaface_ir101_webface4m.ckpt",
    "adaface_ir101_webface12m.ckpt",
    "adaface_ir101_ms1mv3.ckpt",
    "adaface_ir101_ms1mv2.ckpt",
)
ADAFACE_HOME = Path(os.environ.get("STYLEID_ADAFACE_HOME", "~/.cache/styleid/adaface")).expanduser()
WHERE_TO_GET = "the 'Pretrained Models' table of the mk-minchul/AdaFace README"

STAGES = {"ir_18": (2, 2, 2, 2), "ir_34": (3, 4, 6, 3), "ir_50": (3, 4, 14, 3), "ir_101": (3, 13, 30, 3)}
WIDTHS = (64, 128, 256, 512)


# ---------------------------------------------------------------------- network
class BasicBlockIR(nn.Module):
    """BN → conv3x3 → BN → PReLU → conv3x3(stride) → BN, plus a shortcut; no activation after the sum."""

    def __init__(self, in_channels: int, depth: int, stride: int) -> None:
        super().__init__()
        # shortcut first: the checkpoints list it first, and module order is state-dict order
        if in_channels == depth:
            self.shortcut_layer: nn.Module = nn.MaxPool2d(1, stride)  # identity or subsampling, no weights
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(in_channels, depth, 1, stride, bias=False), nn.BatchNorm2d(depth))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, depth, 3, 1, 1, bias=False),
            nn.BatchNorm2d(depth),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class AdaFaceIR(nn.Module):
    """AdaFace's IR backbone; `AdaFaceIR()` is IR-101 (65.2 M parameters, 917 state-dict entries)."""

    def __init__(self, stages: Sequence[int] = STAGES["ir_101"], widths: Sequence[int] = WIDTHS,
                 embedding_dim: int = 512, input_size: int = 112) -> None:
        super().__init__()
        if len(stages) != len(widths) or input_size % (2 ** len(stages)):
            raise StyleIDError(f"AdaFace IR: {len(stages)} stages, {len(widths)} widths and input {input_size} px do not fit")
        self.input_size = input_size
        self.embedding_dim = embedding_dim
        self.input_layer = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.PReLU(widths[0]))
        side = input_size // 2 ** len(stages)
        # defined before the body, as upstream does, so the state dict lists keys in the checkpoints' order
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(widths[-1]),
            nn.Dropout(0.4),
            nn.Flatten(),
            nn.Linear(widths[-1] * side * side, embedding_dim),
            nn.BatchNorm1d(embedding_dim, affine=False),
        )
        units, channels = [], widths[0]
        for count, depth in zip(stages, widths):
            for i in range(count):
                units.append(BasicBlockIR(channels, depth, 2 if i == 0 else 1))
                channels = depth
        self.body = nn.Sequential(*units)

    def forward(self, x: torch.Tensor, return_norm: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """x: [B,3,S,S] BGR in [-1, 1] → [B,D] unit-norm embeddings (and [B,1] norms)."""
        z = self.output_layer(self.body(self.input_layer(x)))
        norm = torch.linalg.vector_norm(z, dim=1, keepdim=True)
        out = z / norm.clamp_min(1e-12)
        return (out, norm) if return_norm else out

    def embed_rgb(self, images: torch.Tensor) -> torch.Tensor:
        """[B,3,S,S] **RGB** in [0, 1] (already aligned) → [B,D]: flips to BGR and scales to [-1, 1]."""
        param = next(self.parameters())
        x = (images.flip(1) - 0.5) / 0.5
        return self.forward(x.to(param.device, param.dtype))  # type: ignore[return-value]


def architecture_from_state_dict(state: dict[str, torch.Tensor], name: str = "checkpoint") -> dict[str, Any]:
    """stages / widths / embedding_dim / input_size of the AdaFaceIR whose weights `state` holds (a stage
    starts where the width changes, as in every IR net, and at unit 0)."""
    try:
        convs = {int(m.group(1)): state[k].shape for k in state if (m := re.fullmatch(r"body\.(\d+)\.res_layer\.1\.weight", k))}
        stem = state["input_layer.0.weight"].shape
        linear = state["output_layer.3.weight"].shape
    except KeyError as err:
        raise StyleIDError(f"{name}: not an AdaFace IR checkpoint (no {err.args[0]!r})") from None
    if not convs or sorted(convs) != list(range(len(convs))) or len(stem) != 4 or len(linear) != 2:
        raise StyleIDError(f"{name}: not an AdaFace IR checkpoint (unexpected body/stem/head layout)")
    stages: list[int] = []
    widths: list[int] = []
    for i in range(len(convs)):
        depth, in_channels = int(convs[i][0]), int(convs[i][1])
        if i == 0 or in_channels != depth:  # every stage starts with a stride-2 unit (unit 0 keeps 64 channels)
            stages.append(0)
            widths.append(depth)
        stages[-1] += 1
    side2 = int(linear[1]) // widths[-1]
    side = int(round(side2 ** 0.5))
    if side * side * widths[-1] != int(linear[1]):
        raise StyleIDError(f"{name}: not an AdaFace IR checkpoint (head input {int(linear[1])} is not {widths[-1]}·side²)")
    return {"stages": tuple(stages), "widths": tuple(widths), "embedding_dim": int(linear[0]),
            "input_size": side * 2 ** len(stages)}


# ---------------------------------------------------------------------- checkpoint reading
class _Inert:
    """What a Lightning callback class used as a dict key unpickles to: a name, never code."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise pickle.UnpicklingError("a stand-in for a Lightning class cannot be instantiated")


def _stand_in(qualified: str) -> tuple[type, str]:
    return type(qualified.rsplit(".", 1)[-1], (_Inert,), {"__module__": "styleid_guidance.baselines.adaface._stand_ins"}), qualified


def _numpy_globals() -> list[Any]:
    core = getattr(np, "_core", None) or np.core  # numpy 2 / numpy 1
    scalar, rebuild = core.multiarray.scalar, core.multiarray._reconstruct
    dtypes = [getattr(np.dtypes, n) for n in ("Float64DType", "Float32DType", "Float16DType", "Int64DType", "Int32DType",
                                                 "Int16DType", "Int8DType", "UInt8DType", "BoolDType") if hasattr(np, "dtypes") and hasattr(np.dtypes, n)]
    # files pickled under numpy 1 name numpy.core.*, numpy 2 writes numpy._core.*: accept both spellings
    return [np.ndarray, np.dtype, *dtypes,
            (scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"),
            (rebuild, "numpy.core.multiarray._reconstruct"), (rebuild, "numpy._core.multiarray._reconstruct")]


LIGHTNING_KEYS = (
    "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint",
    "pytorch_lightning.callbacks.early_stopping.EarlyStopping",
    "pytorch_lightning.callbacks.lr_monitor.LearningRateMonitor",
)


def safe_globals() -> list[Any]:
    """The allow-list: everything beyond tensors that a Lightning checkpoint of AdaFace's era pickles."""
    return [argparse.Namespace, *_numpy_globals(), *(_stand_in(name) for name in LIGHTNING_KEYS)]


def _refused_name(err: Exception) -> str | None:
    text = str(err)
    m = re.search(r"GLOBAL ([\w.]+)", text) or re.search(r"got <class '([\w.]+)'>", text)
    return m.group(1) if m else None


def read_checkpoint(path: str | os.PathLike, extra_safe_globals: Iterable[Any] = ()) -> Any:
    """`torch.load(weights_only=True)` with the allow-list (plus `extra_safe_globals`); one-line errors."""
    path = Path(path)
    try:
        with torch.serialization.safe_globals([*safe_globals(), *extra_safe_globals]):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        name = _refused_name(err)
        what = f"a pickled {name}" if name else "a pickled object"
        raise StyleIDError(f"{path}: refused: the checkpoint holds {what}, which is not on the allow-list for weight files "
                           "(tensors and Lightning's bookkeeping); re-save just the weights with "
                           "torch.save({'state_dict': model.state_dict()}, path)") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError, AttributeError) as err:
        raise StyleIDError(f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}); download it again") from None


def backbone_state(checkpoint: Any, name: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The backbone's tensors: `model.*` of a Lightning `state_dict` with the prefix stripped, the
    margin head (`head.*`) dropped; a state dict that is already bare is taken as it is."""
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise StyleIDError(f"{name}: not an AdaFace checkpoint (no state_dict of tensors)")
    if any(k.startswith("model.") for k in state):
        return {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
    return {k: v for k, v in state.items() if not k.startswith("head.")}


def find_weights(path_or_dir: str | os.PathLike | None = None) -> Path:
    """The .ckpt to load: the file given, a known (or the only) checkpoint in the folder given, or one
    in ADAFACE_HOME. Never downloads (the weights are on Google Drive), so it answers at once."""
    folder = ADAFACE_HOME if path_or_dir is None else Path(path_or_dir).expanduser()
    if path_or_dir is not None and folder.is_file():
        return folder
    if path_or_dir is not None and not folder.exists():
        raise StyleIDError(f"{folder}: no such AdaFace checkpoint file or folder")
    if folder.is_dir():
        for file in ADAFACE_FILES:
            if (folder / file).is_file():
                return folder / file
        found = sorted(p for p in folder.iterdir() if p.suffix in (".ckpt", ".pt", ".pth") and p.is_file())
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise StyleIDError(f"{folder}: {len(found)} checkpoints ({found[0].name}, {found[1].name}, ...); pass the file")
    raise StyleIDError("AdaFace weights not found in {folder}: put {file} (or another AdaFace IR .ckpt, from {where}) "
                       "there, or pass the file's path as {path}", param="path_or_dir", folder=folder, file=ADAFACE_FILES[0],
                       where=WHERE_TO_GET, path=Arg("path_or_dir", flag="--baseline", metavar="adaface=PATH"))


def load_adaface(path_or_dir: str | os.PathLike | None = None, device: torch.device | str | None = None,
                 extra_safe_globals: Iterable[Any] = ()) -> AdaFaceIR:
    """A pretrained AdaFace backbone in eval mode, from a .ckpt file, a folder, or ADAFACE_HOME."""
    path = find_weights(path_or_dir)
    state = backbone_state(read_checkpoint(path, extra_safe_globals), str(path))
    arch = architecture_from_state_dict(state, str(path))
    with torch.device("meta"):
        model = AdaFaceIR(**arch)  # no random init to pay for; load_state_dict(assign=True) brings the weights
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    if missing or extra:
        what = f"missing {missing[0]!r}" if missing else f"unexpected {extra[0]!r}"
        raise StyleIDError(f"{path}: not an AdaFace IR checkpoint ({what})")
    wrong = [k for k, v in expected.items() if tuple(v.shape) != tuple(state[k].shape)]
    if wrong:
        raise StyleIDError(f"{path}: not an AdaFace IR checkpoint ({wrong[0]} has shape {tuple(state[wrong[0]].shape)}, "
                           f"expected {tuple(expected[wrong[0]].shape)})")
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True, assign=True)
    model.eval()
    return model.to(device) if device is not None else model
