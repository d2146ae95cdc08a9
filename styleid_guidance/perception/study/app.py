"""The participant's page: enter (or get) an id, then one trial at a time, then a thank-you.

Nothing of the server leaks to the page: images are re-encoded without their metadata and reach the
browser under content-hash names (never a data-set path or file name, which would give the answer
away), there is no listing, no API endpoint, no run history, and an unexpected failure is one plain
sentence (the details go to the server log). A participant sees only their own progress.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ...errors import StyleIDError
from .plan import PlannedTrial
from .session import CHOICES, Study, check_participant

log = logging.getLogger("styleid.study")

DISPLAY_SIDE = 512  # px: stimuli are shown at most this large
CSS = """
#study-progress { opacity: 0.7; }
#study-choose-a button, #study-choose-b button, #study-choose-a, #study-choose-b { font-size: 1.1em; }
"""
INTRO = (
    "# Face recognition study\n"
    "You will see photos of people and stylized pictures (cartoons, paintings, sketches...). "
    "For each question, answer as well as you can; there is no time limit, but please do not think too long. "
    "Your answers are saved as you go: if the page closes, come back and enter the same participant id."
)
INSTRUCTIONS = {
    "2afc": "**Which stylized picture shows the same person as the photo?** One of the two does.",
    "verify": "**Do the photo and the stylized picture show the same person?**",
}
BUTTONS = {"2afc": ("◀ Left", "Right ▶"), "verify": ("Same person", "Different people")}
SORRY = ("⚠️ Something went wrong on the server. Your answers so far are saved: reload the page and enter "
         "your participant id to continue.")
EXPIRED = "⚠️ Your session has ended (the study server was restarted). Enter your participant id to continue."


def stimulus(path: Path) -> Image.Image:
    """The image as the participant sees it: RGB, at most DISPLAY_SIDE px, no metadata (EXIF, PNG text)."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        im.thumbnail((DISPLAY_SIDE, DISPLAY_SIDE), Image.Resampling.LANCZOS)
        return Image.fromarray(np.asarray(im))


def build_app(study: Study) -> Any:
    import gradio as gr

    def page(state: dict | None, status: str = "", participant: str | None = None) -> list:
        """Every output of every handler, for the participant's current position."""
        hide, show = gr.update(visible=False), gr.update(visible=True)
        if participant is None:  # the welcome form
            return [None, show, hide, hide, status, "", "", None, None, gr.update(value=None, visible=True),
                    gr.update(), gr.update(), ""]
        trial = study.next_trial(participant)
        done, total = study.progress(participant)
        if trial is None:
            thanks = (f"## Thank you!\nYou have answered all {total} questions. Participant id: `{participant}`. "
                      "You can close this page.")
            return [None, hide, hide, show, "", "", "", None, None, gr.update(value=None), gr.update(), gr.update(), thanks]
        images = _images(trial)
        new_state = {"participant": participant, "trial": trial.index, "shown": 0.0}
        left, right = BUTTONS[trial.task]
        progress = f"Question {done + 1} of {total} · participant id `{participant}` (note it to continue later)"
        outputs = [new_state, hide, show, hide, status, progress, INSTRUCTIONS[trial.task],
                   gr.update(value=images[0], label="photo"),
                   gr.update(value=images[1], label="left" if trial.task == "2afc" else "stylized picture"),
                   gr.update(value=images[2], visible=trial.task == "2afc", label="right"),
                   gr.update(value=left), gr.update(value=right), ""]
        new_state["shown"] = study.shown()  # after the images are ready: loading time is not the participant's
        return outputs

    def _images(trial: PlannedTrial) -> list[Image.Image | None]:
        files = [trial.source, *trial.options]
        images: list[Image.Image | None] = [stimulus(study.data.file(f)) for f in files]
        return images + [None] * (3 - len(images))

    def start(text: str) -> list:
        try:
            participant = check_participant(text) if (text or "").strip() else study.new_participant()
            return page(None, "", participant)
        except StyleIDError as err:
            return page(None, f"⚠️ {err}")
        except Exception:
            log.exception("start failed")
            return page(None, SORRY)

    def choose(state: dict | None, which: int) -> list:
        try:
            if not state or "participant" not in state:
                return page(None, EXPIRED)
            participant = state["participant"]
            trial = study.plan(participant)[int(state["trial"])]
            study.answer(participant, trial.index, CHOICES[trial.task][which], float(state["shown"]))
            return page(state, "", participant)
        except Exception:
            log.exception("answer failed")
            return page(None, SORRY)

    with gr.Blocks(title="Face recognition study", analytics_enabled=False, delete_cache=(3600, 3600)) as app:
        state = gr.State(None)
        gr.Markdown(INTRO, elem_id="study-intro")
        status = gr.Markdown(elem_id="study-status")
        with gr.Column(visible=True, elem_id="study-welcome") as welcome:
            participant = gr.Textbox(label="participant id (leave empty if you are new: you will get one)",
                                     max_lines=1, max_length=64, elem_id="study-participant")
            begin = gr.Button("Start / continue", variant="primary", elem_id="study-start")
        with gr.Column(visible=False, elem_id="study-trial") as trial_box:
            progress = gr.Markdown(elem_id="study-progress")
            instruction = gr.Markdown(elem_id="study-instruction")
            with gr.Row():
                image_args = {"type": "pil", "format": "png", "interactive": False, "buttons": [], "height": 340}
                source = gr.Image(label="photo", elem_id="study-source", **image_args)
                option_a = gr.Image(label="left", elem_id="study-a", **image_args)
                option_b = gr.Image(label="right", elem_id="study-b", **image_args)
            with gr.Row():
                choose_a = gr.Button("◀ Left", variant="primary", elem_id="study-choose-a")
                choose_b = gr.Button("Right ▶", variant="primary", elem_id="study-choose-b")
        with gr.Column(visible=False, elem_id="study-done") as done_box:
            thanks = gr.Markdown(elem_id="study-thanks")

        outputs = [state, welcome, trial_box, done_box, status, progress, instruction, source, option_a, option_b,
                   choose_a, choose_b, thanks]
        private = {"api_visibility": "private", "show_progress": "hidden"}
        begin.click(start, [participant], outputs, **private)
        participant.submit(start, [participant], outputs, **private)
        choose_a.click(lambda s: choose(s, 0), [state], outputs, trigger_mode="once", **private)
        choose_b.click(lambda s: choose(s, 1), [state], outputs, trigger_mode="once", **private)
    return app


def launch(app: Any, host: str, port: int | None, share: bool) -> None:
    app.queue(max_size=256, default_concurrency_limit=8)
    app.launch(server_name=host, server_port=port, share=share, show_error=False, ssr_mode=False, css=CSS,
               footer_links=[], run_history=False, max_file_size="1mb", quiet=False)
