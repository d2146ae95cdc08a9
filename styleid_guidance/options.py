"""Choices the Python API and the command line share, in one torch-free place (so `--help` is instant)."""
from __future__ import annotations

CROPS: tuple[str, ...] = ("face", "center", "none")
# One default everywhere images come from users (CLI, demo, examples, the Python API): the released
# StyleID model wants "a rough crop around the face", and photos in the wild are not aligned.
DEFAULT_CROP = "face"
DETECTORS: tuple[str, ...] = ("retinaface", "mtcnn")
DEFAULT_DETECTOR = "retinaface"  # what the released model was evaluated with; mtcnn ships its weights (the offline choice)
OFFLINE_DETECTOR = "mtcnn"  # ships its weights: the tiny models' and the ComfyUI nodes' default (nothing to download)


def detector_for(detector: str | None, tiny: bool = False) -> str:
    """The face detector to use when none was named: mtcnn for the offline tiny models, else DEFAULT_DETECTOR."""
    return detector or (OFFLINE_DETECTOR if tiny else DEFAULT_DETECTOR)


# compute precision of a model call: "auto" = bf16 where the device runs it natively, else fp32 (devices.resolve_precision)
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
# accelerate's `mixed_precision` for training (its own names: "no" = fp32 weights and maths)
MIXED_PRECISIONS: tuple[str, ...] = ("no", "fp16", "bf16")
IDENTITY_LOSSES: tuple[str, ...] = ("styleid", "arcface", "clip", "none")
RELEASED_MODEL = "kwanY/styleid"  # the authors' released StyleID weights on the Hub: every default model
# StyleID's same/different cut on cosine similarity: the paper's middle fixed threshold (Acc@0.4), used by verify,
# score, the metric and the ComfyUI nodes alike
DEFAULT_THRESHOLD = 0.4
# `styleid score --people`: a face is a swap when another person's reference beats its own by more than this cosine
DEFAULT_SWAP_MARGIN = 0.05
# `--layout`: how an input folder is laid out. Training data: auto / stylebench / folders (`styleid train`); a
# benchmark's own layout: multiid-bench (`styleid score`, WithAnyone's MultiID-Bench). One flag, one list.
TRAINING_LAYOUTS: tuple[str, ...] = ("auto", "stylebench", "folders")
BENCHMARK_LAYOUTS: tuple[str, ...] = ("multiid-bench",)
DATA_LAYOUTS: tuple[str, ...] = TRAINING_LAYOUTS + BENCHMARK_LAYOUTS
# guidance for several people: loss_i = 1 − s_ii + contrast · max_{j≠i} s_ij. Pulling alone also moves every face
# toward what all the references share (it can merge people); the push keeps each face off the others' references
DEFAULT_PEOPLE_CONTRAST = 0.5
# an image without a detectable face: embed its centre crop and count it, leave it out, or stop (`styleid score`)
NO_FACE_POLICIES: tuple[str, ...] = ("center", "skip", "error")
