"""The Gradio page: a profile banner, the model status, and the Verify / Stylize / JoJoGAN tabs.

Each click runs one of the plain functions in verify.py / stylize.py / jojo.py; a user mistake
(StyleIDError: no face, bad upload, missing weights) becomes a ⚠️ line in the tab, never a crash.
"""
from __future__ import annotations

import logging

import gradio as gr

from styleid_guidance.errors import StyleIDError

from . import jojo, stylize, verify
from .limits import Limits
from .profiles import Models
from .weights import TINY_BANNER
from .scoring import THRESHOLDS

log = logging.getLogger("styleid-demo")

CSS = """
#profile-banner { border: 2px solid #f08c00; background: #fff4e6; border-radius: 8px; padding: 4px 12px; }
#profile-banner.real { border-color: #2f9e44; background: #ebfbee; }
"""

INTRO = (
    "# StyleID: style-robust face identity\n"
    "Compare how well StyleID, ArcFace and CLIP recognise one person across styles, and what each does as "
    "the identity guidance of a face stylizer."
)


def _failure(err: BaseException) -> str:
    if isinstance(err, StyleIDError):
        return f"⚠️ {err}"
    log.exception("request failed")
    text = str(err).strip().splitlines()
    return f"⚠️ Unexpected error ({type(err).__name__}: {text[0] if text else ''}); the server log has the details."


def status_markdown(models: Models) -> str:
    lines = ["| component | status |", "|---|---|"]
    for item in models.availability():
        state = "✓ ready" if item.reason is None else f"✗ unavailable: {item.reason}"
        if item.reason is None and not models.tiny and not models.is_built(item.key):
            state = "✓ available (loaded on first use)"
        lines.append(f"| {item.label} | {state.replace('|', '/')} |")
    return "\n".join(lines)


def banner_markdown(models: Models, fallback_note: str | None) -> str:
    parts = []
    if fallback_note:
        parts.append(f"⚠️ {fallback_note}")
    if models.tiny:
        parts.append(f"⚠️ {TINY_BANNER}")
    else:
        parts.append(f"Profile **{models.profile}** on {models.device.type.upper()}: real weights, downloaded on first use.")
    return "\n\n".join(parts)


def build_app(models: Models, limits: Limits | None = None, fallback_note: str | None = None, concurrency: int = 1) -> gr.Blocks:
    limits = limits or Limits()
    cache = jojo.GeneratorCache()
    heavy = {"concurrency_limit": concurrency, "concurrency_id": "models"}  # all tabs share the model slots

    def do_verify(files, progress=gr.Progress()):
        try:
            res = verify.run_verify(models, files, limits, progress=progress)
            return res.rows, res.chart, res.message
        except Exception as err:
            return [], None, _failure(err)

    def do_stylize(face, style, custom_prompt, level, seed, guidance_scale, progress=gr.Progress(track_tqdm=True)):
        try:
            res = stylize.run_stylize(models, face, style, custom_prompt, level, seed, guidance_scale, limits, progress=progress)
            return res.grid, res.rows, res.message
        except Exception as err:
            return None, [], _failure(err)

    def do_jojogan(style, face, num_iter, id_weight, preserve_color, seed, progress=gr.Progress()):
        try:
            res = jojo.run_jojogan(models, style, face, num_iter, id_weight, preserve_color, seed, limits, cache, progress=progress)
            return res.grid, res.rows, res.message
        except Exception as err:
            return None, [], _failure(err)

    with gr.Blocks(title="StyleID demo", analytics_enabled=False) as demo:
        gr.Markdown(INTRO)
        gr.Markdown(banner_markdown(models, fallback_note), elem_id="profile-banner",
                    elem_classes=[] if models.tiny or fallback_note else ["real"])
        with gr.Accordion("Models", open=False, elem_id="models-accordion"):
            status = gr.Markdown(status_markdown(models), elem_id="model-status")

        with gr.Tab("Verify", id="verify"):
            gr.Markdown(
                "Upload **two or more images**: the first is the reference photo, the others (stylisations of the same "
                "person, or other people) are compared with it. Thresholds on cosine similarity: "
                + ", ".join(f"{k} {v:.1f}" for k, v in (("StyleID", THRESHOLDS["styleid"]), ("ArcFace", THRESHOLDS["arcface"]),
                                                         ("CLIP", THRESHOLDS["clip"])))
                + " (StyleID: the paper's operating point; ArcFace, CLIP: their best fixed threshold in the paper)."
            )
            with gr.Row():
                with gr.Column(scale=1):
                    files = gr.File(file_count="multiple", file_types=["image"], label="images (first = reference)",
                                    elem_id="verify-files")
                    run_verify = gr.Button("Compare", variant="primary", elem_id="verify-run")
                with gr.Column(scale=2):
                    verify_status = gr.Markdown(elem_id="verify-status")
                    verify_table = gr.Dataframe(headers=verify.HEADERS, label="similarity to the reference",
                                                interactive=False, elem_id="verify-table")
                    verify_chart = gr.Image(label="similarity chart", type="pil", interactive=False, elem_id="verify-chart")
            runs = [run_verify.click(do_verify, [files], [verify_table, verify_chart, verify_status], **heavy)]

        with gr.Tab("Stylize", id="stylize"):
            gr.Markdown(
                "One face photo, a style and a strength level (1 = closest to the photo, 7 = most stylised, the paper's "
                "schedules) → columns per framework, rows without / with ArcFace / with StyleID identity guidance. "
                "Every image uses the same seed and shows its StyleID and ArcFace similarity to your photo."
            )
            with gr.Row():
                with gr.Column(scale=1):
                    face = gr.Image(type="filepath", label="face photo", sources=["upload", "clipboard"], elem_id="stylize-face")
                    style = gr.Dropdown(stylize.style_choices(), value="pixar", label="style", elem_id="stylize-style")
                    custom = gr.Textbox(label="custom prompt (used when the style is 'custom')", elem_id="stylize-prompt")
                    level = gr.Slider(1, 7, value=4, step=1, label="strength level", elem_id="stylize-level")
                    with gr.Row():
                        seed = gr.Number(0, precision=0, label="seed", elem_id="stylize-seed")
                        scale = gr.Slider(0.0, 0.5, value=stylize.DEFAULT_GUIDANCE_SCALE, step=0.01, label="guidance scale",
                                          elem_id="stylize-scale")
                    run_stylize = gr.Button("Stylize", variant="primary", elem_id="stylize-run")
                with gr.Column(scale=2):
                    stylize_status = gr.Markdown(elem_id="stylize-status")
                    grid = gr.Image(label="frameworks × guidance", show_label=False, type="pil", interactive=False,
                                    elem_id="stylize-grid")
                    stylize_table = gr.Dataframe(headers=stylize.HEADERS, label="similarity to the photo", interactive=False,
                                                 elem_id="stylize-table")
            runs += [run_stylize.click(do_stylize, [face, style, custom, level, seed, scale], [grid, stylize_table, stylize_status], **heavy)]

        with gr.Tab("JoJoGAN", id="jojogan"):
            gr.Markdown(
                "A style reference (a stylised portrait) and a face: JoJoGAN fine-tunes StyleGAN2 on the reference twice, "
                "once with an ArcFace and once with a StyleID identity loss, then renders your face with both. "
                "Trained generators are kept per reference image and settings."
            )
            with gr.Row():
                with gr.Column(scale=1):
                    with gr.Row():
                        jj_style = gr.Image(type="filepath", label="style reference", sources=["upload", "clipboard"],
                                            elem_id="jojogan-style")
                        jj_face = gr.Image(type="filepath", label="face photo", sources=["upload", "clipboard"],
                                           elem_id="jojogan-face")
                    iters = gr.Slider(1, 1000, value=models.jojogan_iters, step=1, label="training iterations", elem_id="jojogan-iters")
                    id_weight = gr.Slider(0.0, 5.0, value=jojo.DEFAULT_ID_WEIGHT, step=0.1, label="identity loss weight")
                    with gr.Row():
                        keep_color = gr.Checkbox(False, label="preserve colours")
                        jj_seed = gr.Number(0, precision=0, label="seed")
                    run_jj = gr.Button("Train and stylize", variant="primary", elem_id="jojogan-run")
                with gr.Column(scale=2):
                    jj_status = gr.Markdown(elem_id="jojogan-status")
                    jj_grid = gr.Image(label="ArcFace-trained vs StyleID-trained", show_label=False, type="pil",
                                       interactive=False, elem_id="jojogan-grid")
                    jj_table = gr.Dataframe(headers=jojo.HEADERS, label="similarity to the face", interactive=False,
                                            elem_id="jojogan-table")
            runs += [run_jj.click(do_jojogan, [jj_style, jj_face, iters, id_weight, keep_color, jj_seed], [jj_grid, jj_table, jj_status], **heavy)]

        # models load lazily (and may fail): refresh the status table after every run
        for event in runs:
            event.then(lambda: status_markdown(models), None, status, queue=False)
    return demo
