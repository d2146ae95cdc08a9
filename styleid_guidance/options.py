"""Choices the Python API and the command line share, in one torch-free place (so `--help` is instant)."""
from __future__ import annotations

CROPS: tuple[str, ...] = ("face", "center", "none")
# One default everywhere images come from users (CLI, demo, examples, the Python API): the released
# StyleID model wants "a rough crop around the face", and photos in the wild are not aligned.
DEFAULT_CROP = "face"
DETECTORS: tuple[str, ...] = ("retinaface", "mtcnn")
IDENTITY_LOSSES: tuple[str, ...] = ("styleid", "arcface", "clip", "none")
