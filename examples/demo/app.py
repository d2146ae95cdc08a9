"""The Gradio page: a profile banner, the model status, and the Verify / Stylize / JoJoGAN tabs.

Uploads come in one way on every tab: `gr.File` components hand the handlers a plain path (Gradio's
`gr.Image` decodes the file itself first and answers a broken, empty or huge one with its raw
"Could not preprocess input component…" and the server's temp paths). A handler reads the path through
`limits.open_image` as soon as it arrives: the preview shows what the server read, and a bad file is a
one-sentence `gr.Error` naming the file. Each click runs one of the plain functions in verify.py /
stylize.py / jojo.py; a user mistake (StyleIDError: no face, bad upload, missing weights) becomes a ⚠️
line in the tab, never a crash.
"""
from __future__ import annotations

import html
import logging
from pathlib import Path

import gradio as gr

from styleid_guidance.errors import StyleIDError
from styleid_guidance.options import DEFAULT_CROP

from .tabs import jojo, stylize, verify
from .limits import Limits, open_image, thumbnail
from .profiles import Models
from .scoring import THRESHOLDS
from .status import banner_classes, banner_markdown, status_markdown

log = logging.getLogger("styleid.demo")

FACES_DIR = Path(__file__).resolve().parent.parent / "faces"  # examples/faces in a source checkout

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


def upload_error(message: str) -> gr.Error:
    """A toast with one plain sentence (gr.Error renders HTML: a file name must not)."""
    return gr.Error(html.escape(message), print_exception=False)


def preview_upload(path: str | None, what: str, limits: Limits):
    """The thumbnail of one upload as the server read it, or a gr.Error that says what is wrong with it."""
    if not path:
        return None
    try:
        return thumbnail(open_image(path, what, limits))
    except StyleIDError as err:
        raise upload_error(str(err)) from None


def preview_verify(paths: list[str] | None, limits: Limits) -> tuple[list, str]:
    """(gallery of the readable uploads, a note on the ones left out). A bad file costs only itself."""
    gallery, skipped = verify.previews(paths, limits)
    note = "\n\n".join(f"⚠️ Will be left out: {s}" for s in skipped)
    if skipped and not gallery:
        raise upload_error(skipped[0] if len(skipped) == 1 else f"none of the {len(skipped)} files is a readable image; "
                           f"first: {skipped[0]}")
    if skipped:
        gr.Warning(html.escape("; ".join(skipped)))
    return gallery, note


def shipped_faces() -> dict[str, Path]:
    """The example photos a source checkout ships (none in a wheel: the Examples rows are left out)."""
    names = ("astronaut.jpg", "astronaut_painted.jpg", "astronaut_sketch.jpg")
    found = {n: FACES_DIR / n for n in names if (FACES_DIR / n).is_file()}
    return found if len(found) == len(names) else {}


# The upload previews and the banner refresh are UI plumbing: kept out of the API that gradio_client sees, which
# lists only the three actions (/verify, /stylize, /jojogan).
INTERNAL = {"api_visibility": "private"}


def _file_input(label: str, elem_id: str, multiple: bool = False, types: tuple[str, ...] = ("image",)) -> gr.File:
    return gr.File(file_count="multiple" if multiple else "single", file_types=list(types), type="filepath", label=label,
                   elem_id=elem_id, height=140)


def _preview(label: str, elem_id: str) -> gr.Image:
    return gr.Image(label=label, type="pil", interactive=False, height=200, elem_id=elem_id)


def _on_upload(file: gr.File, preview: gr.Image, what: str, limits: Limits) -> None:
    # clear first, then read: a bad file must not leave the previous photo's preview standing
    file.change(lambda: None, None, preview, queue=False, show_progress="hidden", **INTERNAL).then(
        lambda path: preview_upload(path, what, limits), file, preview, show_progress="hidden", **INTERNAL)


def build_app(models: Models, limits: Limits | None = None, fallback_note: str | None = None, concurrency: int = 1) -> gr.Blocks:
    limits = limits or Limits()
    cache = jojo.GeneratorCache()
    heavy = {"concurrency_limit": concurrency, "concurrency_id": "models"}  # all tabs share the model slots
    faces = shipped_faces()

    def do_verify(files, crop, faces, progress=gr.Progress()):
        try:
            res = verify.run_verify(models, files, limits, progress=progress, crop=crop or DEFAULT_CROP,
                                    faces=faces or "largest")
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
        banner = gr.Markdown(banner_markdown(models, fallback_note), elem_id="profile-banner",
                             elem_classes=banner_classes(models, fallback_note))
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
                    files = _file_input("images (first = reference; videos may follow)", "verify-files", multiple=True,
                                        types=("image", "video"))
                    crop = gr.Radio(verify.CROP_CHOICES, value=DEFAULT_CROP, label="crop", elem_id="verify-crop")
                    face_mode = gr.Radio(verify.FACE_CHOICES, value="largest", label="faces", elem_id="verify-faces")
                    gallery = gr.Gallery(label="uploaded images, as the server read them (first = reference)", columns=4,
                                         height=200, interactive=False, elem_id="verify-gallery")
                    upload_note = gr.Markdown(elem_id="verify-upload-note")
                    run_verify = gr.Button("Compare", variant="primary", elem_id="verify-run")
                    if faces:
                        gr.Examples([[[str(p) for p in faces.values()]]], [files], label="example: a photo, a painting, a sketch",
                                    elem_id="verify-examples")
                with gr.Column(scale=2):
                    verify_status = gr.Markdown(label="status", elem_id="verify-status")
                    verify_table = gr.Dataframe(headers=verify.HEADERS, label="similarity to the reference",
                                                interactive=False, elem_id="verify-table")
                    verify_chart = gr.Image(label="similarity chart", type="pil", interactive=False, elem_id="verify-chart")
            files.change(lambda: ([], ""), None, [gallery, upload_note], queue=False, show_progress="hidden",
                         **INTERNAL).then(lambda paths: preview_verify(paths, limits), files, [gallery, upload_note],
                                          show_progress="hidden", **INTERNAL)
            runs = [run_verify.click(do_verify, [files, crop, face_mode], [verify_table, verify_chart, verify_status],
                                     api_name="verify", **heavy)]

        with gr.Tab("Stylize", id="stylize"):
            gr.Markdown(
                "One face photo, a style and a strength level (1 = closest to the photo, 7 = most stylised, the paper's "
                "schedules) → columns per framework, rows without / with ArcFace / with StyleID identity guidance. "
                "Every image uses the same seed and shows its StyleID and ArcFace similarity to your photo."
            )
            with gr.Row():
                with gr.Column(scale=1):
                    face = _file_input("face photo", "stylize-face")
                    face_preview = _preview("face photo, as the server read it", "stylize-face-preview")
                    if faces:
                        gr.Examples([[str(faces["astronaut.jpg"])]], [face], label="example face", elem_id="stylize-examples")
                    style = gr.Dropdown(stylize.style_choices(), value="pixar", label="style", elem_id="stylize-style")
                    custom = gr.Textbox(label="custom prompt (used when the style is 'custom')", elem_id="stylize-prompt")
                    level = gr.Slider(1, 7, value=4, step=1, label="strength level", elem_id="stylize-level")
                    with gr.Row():
                        seed = gr.Number(0, precision=0, label="seed", elem_id="stylize-seed")
                        scale = gr.Slider(0.0, 0.5, value=stylize.DEFAULT_GUIDANCE_SCALE, step=0.01, label="guidance scale",
                                          elem_id="stylize-scale")
                    run_stylize = gr.Button("Stylize", variant="primary", elem_id="stylize-run")
                with gr.Column(scale=2):
                    stylize_status = gr.Markdown(label="status", elem_id="stylize-status")
                    grid = gr.Image(label="grid: frameworks × guidance", show_label=False, type="pil", interactive=False,
                                    elem_id="stylize-grid")
                    stylize_table = gr.Dataframe(headers=stylize.HEADERS, label="similarity to the photo", interactive=False,
                                                 elem_id="stylize-table")
            _on_upload(face, face_preview, "face photo", limits)
            runs += [run_stylize.click(do_stylize, [face, style, custom, level, seed, scale],
                                       [grid, stylize_table, stylize_status], api_name="stylize", **heavy)]

        with gr.Tab("JoJoGAN", id="jojogan"):
            gr.Markdown(
                "A style reference (a stylised portrait) and a face: JoJoGAN fine-tunes StyleGAN2 on the reference twice, "
                "once with an ArcFace and once with a StyleID identity loss, then renders your face with both. "
                "Trained generators are kept per reference image and settings."
            )
            with gr.Row():
                with gr.Column(scale=1):
                    with gr.Row():
                        with gr.Column():
                            jj_style = _file_input("style reference", "jojogan-style")
                            jj_style_preview = _preview("style reference, as read", "jojogan-style-preview")
                        with gr.Column():
                            jj_face = _file_input("face photo", "jojogan-face")
                            jj_face_preview = _preview("face photo, as read", "jojogan-face-preview")
                    if faces:
                        gr.Examples([[str(faces["astronaut_painted.jpg"]), str(faces["astronaut.jpg"])]], [jj_style, jj_face],
                                    label="example: a painted portrait and a photo", elem_id="jojogan-examples")
                    iters = gr.Slider(1, 1000, value=models.jojogan_iters, step=1, label="training iterations", elem_id="jojogan-iters")
                    id_weight = gr.Slider(0.0, 5.0, value=jojo.DEFAULT_ID_WEIGHT, step=0.1, label="identity loss weight",
                                          elem_id="jojogan-id-weight")
                    with gr.Row():
                        keep_color = gr.Checkbox(False, label="preserve colours")
                        jj_seed = gr.Number(0, precision=0, label="seed")
                    run_jj = gr.Button("Train and stylize", variant="primary", elem_id="jojogan-run")
                with gr.Column(scale=2):
                    jj_status = gr.Markdown(label="status", elem_id="jojogan-status")
                    jj_grid = gr.Image(label="ArcFace-trained vs StyleID-trained", show_label=False, type="pil",
                                       interactive=False, elem_id="jojogan-grid")
                    jj_table = gr.Dataframe(headers=jojo.HEADERS, label="similarity to the face", interactive=False,
                                            elem_id="jojogan-table")
            _on_upload(jj_style, jj_style_preview, "style reference", limits)
            _on_upload(jj_face, jj_face_preview, "face photo", limits)
            runs += [run_jj.click(do_jojogan, [jj_style, jj_face, iters, id_weight, keep_color, jj_seed],
                                  [jj_grid, jj_table, jj_status], api_name="jojogan", **heavy)]

        # models load lazily (and may fail): refresh the banner and the status table after every run
        def refresh():
            return gr.update(value=banner_markdown(models, fallback_note), elem_classes=banner_classes(models, fallback_note)), \
                status_markdown(models)

        for event in runs:
            event.then(refresh, None, [banner, status], queue=False, **INTERNAL)
    return demo
