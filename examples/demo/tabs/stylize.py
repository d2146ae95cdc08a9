"""Stylize tab: one face photo, one style, one strength level → a 3-row grid, one column per framework.

Columns are the frameworks, every image stylizer in `styleid_guidance.pipelines.STYLIZERS` (IP-Adapter, InstantID,
InfiniteYou, FLUX.1 Kontext — the style prompt becomes Kontext's instruction, `presets.kontext_instruction`), rows
the identity guidance (none,
ArcFace, StyleID). Every cell uses the same seed, so a column differs only by its guidance; every
image is annotated with its StyleID and ArcFace similarity to the input photo.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from PIL import Image

from styleid_guidance.errors import NoFaceError, StyleIDError
from styleid_guidance.integrations.defaults import DEFAULT_SCALES

from ..limits import Limits, display_name, open_image
from ..profiles import Models
from ..weight_sources import framework_label, frameworks
from ..render import Cell, image_grid
from ..scoring import Prepared, caption, no_face_note, prepare, score

log = logging.getLogger("styleid.demo")

GUIDANCE_ROWS = (("none", "unguided"), ("arcface", "ArcFace-guided"), ("styleid", "StyleID-guided"))
CUSTOM = "custom"
DEFAULT_GUIDANCE_SCALE = DEFAULT_SCALES["image"]  # IdentityGuidanceCallback's default step size on still images
HEADERS = ["framework", "guidance", "StyleID similarity", "ArcFace similarity"]


def _no_progress(*args, **kwargs) -> None:
    pass


def style_choices() -> list[tuple[str, str]]:
    from styleid_guidance.pipelines.presets import STYLE_PROMPTS

    return [(f"{key}: {prompt}", key) for key, prompt in STYLE_PROMPTS.items()] + [("custom (type your own prompt)", CUSTOM)]


def resolve_prompt(style: str | None, custom_prompt: str | None) -> str:
    from styleid_guidance.pipelines.presets import STYLE_PROMPTS

    custom_prompt = (custom_prompt or "").strip()
    if style == CUSTOM or not style:
        if not custom_prompt:
            raise StyleIDError("style: 'custom' needs a prompt; type one in the prompt box or pick one of the ten styles")
        return custom_prompt
    if style not in STYLE_PROMPTS:
        raise StyleIDError(f"style {style!r} is not one of the paper's ten ({', '.join(STYLE_PROMPTS)}) or 'custom'")
    return STYLE_PROMPTS[style]


def check_level(level) -> int:
    from styleid_guidance.pipelines.presets import STRENGTH_LEVELS

    if level is None or float(level) != int(float(level)) or int(float(level)) not in STRENGTH_LEVELS:
        raise StyleIDError(f"strength level must be a whole number from 1 to 7, got {level!r}")
    return int(float(level))


@dataclass
class StylizeResult:
    grid: Image.Image
    rows: list[list]
    message: str


def run_stylize(models: Models, face_path: str | os.PathLike | None, style: str | None, custom_prompt: str | None,
                level, seed, guidance_scale: float, limits: Limits, progress=_no_progress) -> StylizeResult:
    prompt = resolve_prompt(style, custom_prompt)
    level = check_level(level)
    seed = int(seed or 0)
    if not float(guidance_scale) >= 0:
        raise StyleIDError(f"guidance scale must be >= 0, got {guidance_scale!r}")
    face = open_image(face_path, "face photo", limits)
    name = display_name(face_path)
    progress(0.01, desc="finding the face")
    reference = prepare(models, face, name)
    if reference.region is None:
        raise NoFaceError(f"face photo ({name}): no face found; upload a photo with one clear, roughly frontal face")

    notes: list[str] = []
    callbacks = {}
    for loss_name, label in GUIDANCE_ROWS[1:]:
        try:
            from styleid_guidance.integrations import IdentityGuidanceCallback

            progress(0.02, desc=f"loading {label.split('-')[0]} for guidance")
            loss = models.identity_loss(loss_name, reference=face)
            callbacks[loss_name] = lambda loss=loss: IdentityGuidanceCallback(loss, scale=float(guidance_scale), seed=seed,
                                                                              **models.guidance_kwargs)
        except Exception as err:  # a missing optional package or weights: that column says why, the others still run
            callbacks[loss_name] = f"{label} unavailable: {_reason(err)}"

    columns = frameworks()
    labels = [framework_label(fw) for fw in columns]
    cells = [[Cell(None, "") for _ in columns] for _ in GUIDANCE_ROWS]
    outputs: list[tuple[int, int, Prepared]] = []
    total = len(columns) * len(GUIDANCE_ROWS)
    for c, fw in enumerate(columns):
        try:
            progress(0.03 + 0.87 * (c * len(GUIDANCE_ROWS)) / total, desc=f"loading {labels[c]} (first use downloads the weights)")
            stylizer = models.stylizer(fw)
        except StyleIDError as err:
            for r in range(len(GUIDANCE_ROWS)):
                cells[r][c] = Cell(None, str(err))
            continue
        for r, (loss_name, label) in enumerate(GUIDANCE_ROWS):
            progress(0.03 + 0.87 * (c * len(GUIDANCE_ROWS) + r) / total, desc=f"{labels[c]} · {label}")
            make_cb = callbacks.get(loss_name)
            if isinstance(make_cb, str):
                cells[r][c] = Cell(None, make_cb)
                continue
            try:
                image = stylizer(face, prompt, level, identity_guidance=make_cb() if make_cb else None, seed=seed,
                                 **models.call_overrides)
            except NoFaceError:
                raise NoFaceError(f"face photo ({name}): {labels[c]}'s face model found no face; "
                                  "upload a photo with one clear, roughly frontal face") from None
            except StyleIDError as err:
                cells[r][c] = Cell(None, f"{labels[c]} · {label}: {err}")
                continue
            except Exception as err:  # one failing cell must not cost the other eight
                log.exception("%s %s failed", fw, label)
                cells[r][c] = Cell(None, f"{labels[c]} · {label} failed: {_reason(err)}")
                continue
            outputs.append((r, c, Prepared(f"{labels[c]} {label}", image)))

    rows: list[list] = []
    if outputs:
        progress(0.92, desc="scoring the outputs")
        prepared = [prepare(models, p.image, p.name) for _, _, p in outputs]
        scores = score(models, reference, prepared, ("styleid", "arcface"))
        for i, (r, c, p) in enumerate(outputs):
            cells[r][c] = Cell(p.image, caption(scores, i))
            rows.append([labels[c], GUIDANCE_ROWS[r][1]]
                        + [round(scores.similarity[m][i], 3) if m in scores.similarity else "n/a" for m in ("styleid", "arcface")])
        note = no_face_note(prepared)
        if note:
            notes.append(note)
        notes += list(scores.unavailable.values())
    else:
        notes.append("No framework produced an image; the grid says why for each cell.")
    grid = image_grid(cells, [label for _, label in GUIDANCE_ROWS], labels)
    lines = [f"Prompt: *{prompt}* · strength level {level} · seed {seed} (every cell) · guidance scale {float(guidance_scale):g}"]
    lines += [f"⚠️ {n}" for n in notes] + [f"ℹ️ {n}" for n in models.notes]
    return StylizeResult(grid, rows, "\n\n".join(lines))


def _reason(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")
