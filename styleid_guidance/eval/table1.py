"""The `--table1` preset: StyleID and every baseline of the paper's Table 1, in its layout.

Crops follow the protocol the paper implies for StyleBench-H's whole-portrait images:
- CLIP-family models (StyleID, CLIP, SigLIP2) see the whole portrait through CLIP's own
  preprocessing: shortest-side resize + centre crop (crop="center");
- face-recognition models (ArcFace, AdaFace, AntelopeV2) see what they were trained on: the largest
  face aligned to ArcFace's 112-px 5-point template (crop="face"; AntelopeV2 with insightface's own
  detector and norm_crop, as InstantID); an image with no detectable face (heavy styles)
  is embedded from its centred square, and table.md says how many images that was.
A baseline whose weights are missing (or cannot be downloaded now) is listed as skipped with the
reason; the StyleID model itself must load.
"""
from __future__ import annotations

from typing import Any, Sequence

from .models import BASELINES, FACE_MODELS, ModelSpec, parse_baseline
from .report import PAPER_SPLITS, human_table, markdown_table

ORDER = ("clip", "siglip2", "arcface", "adaface", "antelopev2")  # the paper's rows; StyleID last
PORTRAIT_CROP = "center"
FACE_CROP = "face"


def crop_for(kind: str) -> str:
    return FACE_CROP if kind in FACE_MODELS else PORTRAIT_CROP


def table1_specs(model: str | None, name: str, overrides: Sequence[str] = ()) -> list[ModelSpec]:
    """Every baseline (NAME=MODEL in `overrides` replaces its weights), then the StyleID model."""
    given = {s.kind: s for s in map(parse_baseline, overrides)}
    specs = []
    for kind in ORDER:
        source = given[kind].source if kind in given else BASELINES[kind]
        specs.append(ModelSpec(kind, kind, source, crop=crop_for(kind), no_face="center" if kind in FACE_MODELS else "error"))
    if model is not None:
        specs.append(ModelSpec(name, "styleid", str(model), crop=PORTRAIT_CROP))
    return specs


def render_table1(metrics: dict[str, dict[str, Any]], specs: Sequence[ModelSpec], skipped: dict[str, str],
                  fallbacks: dict[str, int], n_images: int) -> str:
    lines = ["# Table 1: identity verification on the pairs (the paper's layout)", ""]
    if metrics:
        # the paper's three columns; pairs from elsewhere (e.g. `styleid generate --pairs`, split "generated")
        # would leave them empty, so an "All" column then shows every pair
        splits = {split for m in metrics.values() for split in m.get("split", {})}
        lines.append(markdown_table(metrics, splits=PAPER_SPLITS, total=not splits <= set(PAPER_SPLITS) or not splits))
        crops = "; ".join(f"{s.name}: {'aligned 112-px face' if s.crop == FACE_CROP else 'whole portrait (resize + centre crop)'}"
                          for s in specs if s.name in metrics)
        lines.append(f"Crops: {crops}.")
    else:
        lines.append("No model could be evaluated.")
    for name, n in fallbacks.items():
        if n:
            lines.append(f"{name}: no face found in {n} of {n_images} images; those were embedded from the centred square.")
    if skipped:
        lines += ["", "Skipped (weights not available):", ""]
        lines += [f"- {name}: {reason}" for name, reason in skipped.items()]
    human = human_table(metrics) if metrics else ""
    if human:
        lines += ["", human]
    return "\n".join(lines).rstrip("\n") + "\n"
