"""The demo's three tabs as plain functions (the Gradio wiring is app.py): verify (with clips.py for videos and
group.py for group photos), stylize and jojo."""
