"""Bad uploads on every tab of the demo, through Gradio's own preprocessing: one plain sentence, no path.

The Stylize and JoJoGAN tabs once took `gr.Image` inputs, which decode the file inside Gradio before any
of our code runs: a text file, an empty file or a 20000 x 20000 PNG came back as Gradio's raw
"Could not preprocess input component…" with the server's temp paths. Every upload is a `gr.File`
(a path) now, read by `limits.open_image`; these tests push the same files through
`Blocks.preprocess_data` and the click handlers, as a browser request would.
"""
from __future__ import annotations

import asyncio
import struct
import zlib
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from gradio.data_classes import FileData
from PIL import Image

from styleid_guidance.demo import app as demo_app
from styleid_guidance.demo.limits import Limits
from styleid_guidance.demo.profiles import Models
from support import REPO

FACES = REPO / "examples" / "faces"


def _huge_png(path: Path) -> Path:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("uploads")
    (folder / "notes.png").write_text("not an image")
    (folder / "empty.png").write_bytes(b"")
    return {"non-image": folder / "notes.png", "empty": folder / "empty.png", "huge": _huge_png(folder / "huge.png")}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio")))  # Gradio's upload cache, not /tmp/gradio
    try:
        yield demo_app.build_app(Models("tiny", device="cpu"), Limits())
    finally:
        mp.undo()


def _payload(path: Path) -> dict:
    return {"path": str(path), "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}


def _run_event(demo, fn, values: list):
    """What a browser request does: Gradio's preprocessing of every input, then the handler."""
    processed = asyncio.run(demo.preprocess_data(fn, values, None, explicit_call=True))
    kwargs = {"progress": lambda *a, **k: None} if "progress" in fn.fn.__code__.co_varnames else {}
    return processed, fn.fn(*processed, **kwargs)


def _assert_plain(message: str, bad: Path) -> None:
    assert message.count("\n") == 0 and message.strip(), message
    assert bad.name in message and str(bad.parent) not in message and "/tmp" not in message, message
    assert "Could not preprocess" not in message and "Traceback" not in message and "Error:" not in message, message


def test_every_upload_is_a_file_path_input(demo):
    """No event takes a gr.Image input: its preprocessing decodes (and fails on) the upload before our checks."""
    inputs = [b for fn in demo.fns.values() for b in fn.inputs]
    uploads = [b for b in inputs if isinstance(b, gr.File)]
    assert not any(isinstance(b, gr.Image) for b in inputs)
    assert {b.elem_id for b in uploads} == {"verify-files", "stylize-face", "jojogan-style", "jojogan-face"}
    assert all(b.type == "filepath" for b in uploads)


def test_gradio_image_preprocessing_is_what_failed(bad_files):
    """The regression this guards against: gr.Image raises on the same files gr.File passes through."""
    for path in bad_files.values():
        with pytest.raises(Exception):
            gr.Image(type="filepath").preprocess(FileData(path=str(path)))
        assert gr.File(type="filepath").preprocess(FileData(path=str(path))) == str(path)


@pytest.mark.parametrize("kind", ["non-image", "empty", "huge"])
def test_bad_uploads_on_each_tab_end_as_one_sentence(demo, bad_files, kind):
    bad = bad_files[kind]
    by_inputs = {tuple(b.elem_id for b in fn.inputs): fn for fn in demo.fns.values() if fn.concurrency_id == "models"}
    verify = by_inputs[("verify-files", "verify-crop", "verify-faces")]
    stylize = next(fn for ids, fn in by_inputs.items() if ids[0] == "stylize-face")
    jojogan = next(fn for ids, fn in by_inputs.items() if ids[:2] == ("jojogan-style", "jojogan-face"))
    good = FACES / "astronaut.jpg"

    _, (rows, chart, message) = _run_event(demo, verify, [[_payload(bad), _payload(good)], "face", "largest"])
    assert rows == [] and chart is None and message.startswith(f"⚠️ reference (image 1) ({bad.name}):")
    _assert_plain(message, bad)
    _, (grid, rows, message) = _run_event(demo, stylize, [_payload(bad), "pixar", "", 4, 0, 0.05])
    assert grid is None and message.startswith(f"⚠️ face photo ({bad.name}):")
    _assert_plain(message, bad)
    _, (grid, rows, message) = _run_event(demo, jojogan, [_payload(bad), _payload(good), 2, 1.0, False, 0])
    assert grid is None and message.startswith(f"⚠️ style reference ({bad.name}):")
    _assert_plain(message, bad)


@pytest.mark.parametrize("kind", ["non-image", "empty", "huge"])
def test_the_upload_preview_answers_a_bad_file_with_gr_error(demo, bad_files, kind):
    bad = bad_files[kind]
    previews = [fn for fn in demo.fns.values() if len(fn.inputs) == 1 and isinstance(fn.inputs[0], gr.File)
                and fn.fn.__name__ == "<lambda>" and fn.outputs and isinstance(fn.outputs[0], (gr.Image, gr.Gallery))]
    assert {fn.inputs[0].elem_id for fn in previews} == {"verify-files", "stylize-face", "jojogan-style", "jojogan-face"}
    for fn in previews:
        value = [_payload(bad)] if fn.inputs[0].file_count == "multiple" else _payload(bad)
        with pytest.raises(gr.Error) as info:
            _run_event(demo, fn, [value])
        _assert_plain(info.value.message, bad)
        assert info.value.print_exception is False  # a user mistake, not a server traceback


def test_previews_show_what_the_server_read(tmp_path, bad_files):
    thumb = demo_app.preview_upload(str(FACES / "astronaut.jpg"), "face photo", Limits())
    assert isinstance(thumb, Image.Image) and max(thumb.size) == 256
    assert demo_app.preview_upload(None, "face photo", Limits()) is None
    # a file name is text in the toast, never markup
    odd = tmp_path / "<img src=x onerror=alert(1)>.png"
    odd.write_text("nope")
    with pytest.raises(gr.Error) as info:
        demo_app.preview_upload(str(odd), "face photo", Limits())
    assert "&lt;img src=x onerror=alert(1)&gt;.png" in info.value.message and "<img" not in info.value.message


def test_verify_preview_keeps_the_good_files_and_names_the_bad(monkeypatch, bad_files):
    warned = []
    monkeypatch.setattr(gr, "Warning", lambda message, **kw: warned.append(message))
    gallery, note = demo_app.preview_verify([str(FACES / "astronaut.jpg"), str(bad_files["huge"]), str(FACES / "astronaut_sketch.jpg")],
                                            Limits())
    assert [caption for _, caption in gallery] == ["reference: astronaut.jpg", "astronaut_sketch.jpg"]
    assert note == "⚠️ Will be left out: image 2 (huge.png): too many pixels; resize it to at most 4096 px per side"
    assert len(warned) == 1 and "huge.png" in warned[0]
    with pytest.raises(gr.Error, match="none of the 2 files is a readable image"):
        demo_app.preview_verify([str(bad_files["empty"]), str(bad_files["non-image"])], Limits())
    assert demo_app.preview_verify(None, Limits()) == ([], "")


def test_examples_offer_the_shipped_faces(demo):
    faces = demo_app.shipped_faces()
    assert sorted(faces) == ["astronaut.jpg", "astronaut_painted.jpg", "astronaut_sketch.jpg"]
    datasets = {b.elem_id: b for b in demo.blocks.values() if isinstance(b, gr.Dataset)}
    assert {"verify-examples", "stylize-examples", "jojogan-examples"} <= set(datasets)
    samples = str(datasets["verify-examples"].samples)
    assert all(name in samples for name in faces)
    assert "astronaut_painted.jpg" in str(datasets["jojogan-examples"].samples)
    assert np.all([Image.open(p).size[0] >= 256 for p in faces.values()])
