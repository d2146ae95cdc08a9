"""Errors keep their cause, EXIF trouble is said once, and every command logs one way (`styleid COMMAND: ...`)."""
from __future__ import annotations

import importlib.metadata
import logging
import urllib.error

import pytest
from PIL import Image

from styleid_guidance.errors import StyleIDError, reason

DNS = "<urlopen error [Errno -3] Temporary failure in name resolution: github.com>"


@pytest.fixture
def online(monkeypatch):
    for var in ("HF_HUB_OFFLINE", "STYLEID_OFFLINE"):
        monkeypatch.delenv(var, raising=False)


def _refuse_download(monkeypatch):
    import facexlib.utils

    def fail(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution: github.com")

    monkeypatch.setattr(facexlib.utils, "load_file_from_url", fail)


def test_reason_keeps_the_class_and_the_whole_message_on_one_line():
    assert reason(urllib.error.URLError("[Errno -3] Temporary\nfailure")) == "URLError: <urlopen error [Errno -3] Temporary failure>"
    assert reason(ValueError()) == "ValueError"
    long = "x" * 300
    assert reason(OSError(long)).endswith(long)


def test_retinaface_download_failure_says_why(tmp_path, monkeypatch, online):
    from styleid_guidance.faces import detection

    _refuse_download(monkeypatch)
    with pytest.raises(StyleIDError) as err:
        detection._retinaface.__wrapped__(str(tmp_path), "cpu")
    assert DNS in str(err.value) and "detector='mtcnn'" in str(err.value)
    assert DNS in err.value.for_cli() and "--detector mtcnn" in err.value.for_cli()


def test_arcface_download_failure_says_why(tmp_path, monkeypatch, online):
    from styleid_guidance.baselines import arcface

    _refuse_download(monkeypatch)
    with pytest.raises(StyleIDError) as err:
        arcface._weights_path(None, str(tmp_path))
    assert DNS in str(err.value) and str(tmp_path) in str(err.value)


def test_arcface_offline_is_refused_without_trying(tmp_path, monkeypatch):
    from styleid_guidance.baselines import arcface

    monkeypatch.setenv("STYLEID_OFFLINE", "1")
    with pytest.raises(StyleIDError, match="downloads are off"):
        arcface._weights_path(None, str(tmp_path))


def test_adapter_loader_errors_keep_the_whole_reason():
    from styleid_guidance.pipelines.adapter_files import load_or_explain

    cause = "We couldn't connect to 'https://huggingface.co' to load the files, and couldn't find them in the cache: " * 2

    def load():
        raise OSError(cause)

    with pytest.raises(StyleIDError) as err:
        load_or_explain(load, "InstantID ControlNet", "InstantX/InstantID", "instantid")
    assert " ".join(cause.split()) in str(err.value) and "check instantid" in str(err.value)


def test_unreadable_exif_is_logged_once(monkeypatch, caplog):
    from styleid_guidance.files import images

    monkeypatch.setattr(images, "_exif_warned", False)

    class Broken(Image.Image):
        def getexif(self):
            raise SyntaxError("not a TIFF file (header b'\\x00\\x00' not valid)")

    first, second = Image.new("RGB", (4, 4)), Image.new("RGB", (4, 4))
    first.__class__ = second.__class__ = Broken
    with caplog.at_level(logging.WARNING, logger="styleid.images"):
        assert images.upright(first) is first and images.upright(second) is second
    records = [r for r in caplog.records if r.name == "styleid.images"]
    assert len(records) == 1 and "unreadable EXIF (SyntaxError: not a TIFF file" in records[0].getMessage()


def test_version_falls_back_only_when_the_package_is_not_installed(monkeypatch):
    from styleid_guidance.perception.generate import engine

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    assert engine._version() == "unknown"

    def broken(name):
        raise RuntimeError("a real bug")

    monkeypatch.setattr(importlib.metadata, "version", broken)
    with pytest.raises(RuntimeError):
        engine._version()


def test_command_logger_names_the_running_command_for_library_lines_too(capsys):
    from styleid_guidance.cli.runtime import command_logger

    log = command_logger("embed")
    log.info("wrote 3 embeddings")
    logging.getLogger("styleid.images").warning("x.jpg: unreadable EXIF")
    logging.getLogger("styleid.images").debug("not shown")
    command_logger("eval").info("wrote table.md")  # a second command in one process: one handler, its own name
    err = capsys.readouterr().err.splitlines()
    assert err == ["styleid embed: wrote 3 embeddings", "styleid embed: x.jpg: unreadable EXIF", "styleid eval: wrote table.md"]
    assert not logging.getLogger("styleid").propagate  # a root handler (accelerate's) must not print them twice


def test_embed_logs_its_summary_on_stderr_and_keeps_stdout_clean(tmp_path, capsys):
    from styleid_guidance.cli import run

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        Image.new("RGB", (64, 64), (40 * i, 90, 160)).save(folder / f"{i}.png")
    assert run(["embed", str(folder), "-o", str(tmp_path / "e.safetensors"), "--model", "test-tiny", "--crop", "none",
                "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert out == "" and "styleid embed: wrote 2 embeddings of dimension" in err


def test_one_wording_serves_python_callers_and_the_command_line():
    from styleid_guidance.errors import Arg, NoFaceError
    from styleid_guidance.faces.detection import no_face_error

    err = no_face_error("a.png")
    assert isinstance(err, NoFaceError)
    assert str(err) == "a.png: no face found; use crop='center' (or a clearer, larger face)"
    assert err.for_cli() == "a.png: no face found; use --crop center (or a clearer, larger face)"
    switch = StyleIDError("{x}: pass {fix}", x="f", fix=Arg("align", False, flag="--no-align"))
    assert (str(switch), switch.for_cli()) == ("f: pass align=False", "f: pass --no-align")
    literal = StyleIDError("a {dict} stays as written")  # no fields: not a template
    assert str(literal) == literal.for_cli() == "a {dict} stays as written"


def test_for_option_words_the_argument_at_fault_as_its_flag_or_prefixes_it():
    from styleid_guidance.cli.parsing import for_option
    from styleid_guidance.errors import Arg

    with pytest.raises(StyleIDError) as named:
        with for_option("--model", "x"):
            raise StyleIDError("{weights}: missing; pass {fix}", param="path", weights="w.ckpt",
                               fix=Arg("path", flag="--baseline", metavar="adaface=PATH"))
    assert named.value.for_cli() == "w.ckpt: missing; pass --model adaface=PATH"
    assert str(named.value) == "w.ckpt: missing; pass path"
    assert (named.value.option, named.value.option_value) == ("--model", "x")
    with pytest.raises(StyleIDError) as plain:
        with for_option("--pairs", "p.csv"), for_option("--output"):  # the innermost flag wins
            raise StyleIDError("p.csv: not UTF-8 text")
    assert plain.value.for_cli() == "--output: p.csv: not UTF-8 text"


def test_a_wrapped_error_keeps_its_cause_fields_and_wording():
    from styleid_guidance.cli.parsing import for_option
    from styleid_guidance.errors import Arg
    from styleid_guidance.eval.models import ModelUnavailable

    inner = StyleIDError("not found; pass {fix}", param="path", fix=Arg("path", flag="--baseline", metavar="arcface=PATH"))
    outer = inner.wrapped(ModelUnavailable, "arcface: ")
    assert isinstance(outer, ModelUnavailable) and outer.__cause__ is inner and outer.param == "path"
    assert str(outer) == "arcface: not found; pass path"
    assert outer.for_cli() == "arcface: not found; pass --baseline arcface=PATH"
    with pytest.raises(ModelUnavailable) as err:
        with for_option("--model"):
            raise outer
    assert err.value.for_cli() == "arcface: not found; pass --model arcface=PATH"  # `styleid score` names its own flag
