"""Choices the Python API and the command line share, in one torch-free place (so `--help` is instant)."""
from __future__ import annotations

CROPS: tuple[str, ...] = ("face", "center", "none")
# One default everywhere images come from users (CLI, demo, examples, the Python API): the released
# StyleID model wants "a rough crop around the face", and photos in the wild are not aligned.
DEFAULT_CROP = "face"
DETECTORS: tuple[str, ...] = ("retinaface", "mtcnn")
IDENTITY_LOSSES: tuple[str, ...] = ("styleid", "arcface", "clip", "none")
RELEASED_MODEL = "kwanY/styleid"  # the authors' released StyleID weights on the Hub: every default model
# StyleID's same/different cut on cosine similarity: the paper's middle fixed threshold (Acc@0.4), used by verify,
# score, the metric and the ComfyUI nodes alike
DEFAULT_THRESHOLD = 0.4
# an image without a detectable face: embed its centre crop and count it, leave it out, or stop (`styleid score`)
NO_FACE_POLICIES: tuple[str, ...] = ("center", "skip", "error")
