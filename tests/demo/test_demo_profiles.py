"""Demo profiles: the offline fallback, unavailable frameworks with reasons, the CLI's serving defaults."""
from __future__ import annotations

import dataclasses
import time
import urllib.request

import pytest

from styleid_guidance.cli import build_parser as styleid_parser
from styleid_guidance.cli import run
from styleid_guidance.demo import weight_sources as weights
from styleid_guidance.demo.cli import is_loopback
from styleid_guidance.demo.profiles import Models
from styleid_guidance.demo.weight_sources import hub_reachable, parse_weight_overrides, resolve_profile
from styleid_guidance.hub import resolve as hub
from styleid_guidance.errors import StyleIDError
from styleid_guidance.pipelines import STYLIZERS


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    hub._answers.clear()
    yield tmp_path / "hub"
    hub._answers.clear()


def test_auto_falls_back_to_tiny_offline_and_says_why(empty_hub_cache):
    start = time.perf_counter()
    profile, note = resolve_profile("auto")
    assert profile == "tiny"
    assert "fell back to `--profile tiny`" in note and "kwanY/styleid" in note and "offline" in note
    assert time.perf_counter() - start < 2.0


def test_auto_uses_real_profile_when_weights_are_local_or_cached(empty_hub_cache, tmp_path):
    folder = tmp_path / "my_styleid"
    folder.mkdir()
    assert resolve_profile("auto", {"styleid": str(folder)}) == ("sd15", None)
    snapshot = empty_hub_cache / "models--kwanY--styleid" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    assert resolve_profile("auto") == ("sd15", None)
    assert resolve_profile("tiny") == ("tiny", None)  # an explicit profile is taken as is
    with pytest.raises(StyleIDError, match="--profile must be one of"):
        resolve_profile("sd21")


def test_hub_probe_gives_up_quickly_when_the_network_hangs(monkeypatch, empty_hub_cache):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("STYLEID_OFFLINE", raising=False)
    calls = []

    def hanging_urlopen(*args, **kwargs):
        calls.append(args)
        time.sleep(30)

    monkeypatch.setattr(urllib.request, "urlopen", hanging_urlopen)
    start = time.perf_counter()
    ok, why = hub_reachable(timeout=0.3)
    assert not ok and "cannot be reached" in why
    assert time.perf_counter() - start < 1.5
    assert len(calls) == 1
    assert hub_reachable(timeout=0.3) == (ok, why) and len(calls) == 1  # asked once per process


def test_real_profile_shows_unavailable_parts_with_reasons(empty_hub_cache, tmp_path):
    missing = tmp_path / "missing.pt"
    models = Models("sd15", device="cpu", weights={"jojogan.stylegan_ckpt": str(missing)}, model_rootpath=str(tmp_path))
    status = {a.label: a.reason for a in models.availability()}
    assert "kwanY/styleid" in status["StyleID"] and "not in the local Hugging Face cache" in status["StyleID"]
    # ArcFace: not on disk and no download possible offline, so unavailable (not a failure on the first click)
    assert "recognition_arcface_ir_se50.pth is not in" in status["ArcFace"] and "offline" in status["ArcFace"]
    with pytest.raises(StyleIDError, match="ArcFace is unavailable"):
        models.identity_module("arcface")
    assert "not in the local Hugging Face cache" in status["IP-Adapter"]
    assert "not part of the sd15 profile" in status["InstantID"] and "--profile sdxl" in status["InstantID"]
    assert "--profile flux" in status["InfiniteYou"]
    assert str(missing) in status["JoJoGAN"] and "--weights jojogan.stylegan_ckpt=PATH" in status["JoJoGAN"]
    # using an unavailable part is a one-line StyleIDError, remembered (no second load attempt)
    with pytest.raises(StyleIDError, match="InstantID is unavailable: not part of the sd15 profile"):
        models.stylizer("instantid")
    with pytest.raises(StyleIDError, match="StyleID is unavailable"):
        models.identity_module("styleid")
    assert "kwanY/styleid" in {a.label: a.reason for a in models.availability()}["StyleID"]
    with pytest.raises(StyleIDError, match="JoJoGAN is unavailable"):
        models.jojogan()


def test_a_framework_that_does_not_import_is_unavailable_not_fatal(monkeypatch):
    broken = dataclasses.replace(STYLIZERS["instantid"], target="styleid_guidance.pipelines.no_such_module:InstantIDStylizer")
    monkeypatch.setitem(STYLIZERS, "instantid", broken)
    models = Models("tiny", device="cpu")
    status = {a.label: a.reason for a in models.availability()}
    assert "cannot import styleid_guidance.pipelines.no_such_module" in status["InstantID"]
    assert status["IP-Adapter"] is None and status["StyleID"] is None
    with pytest.raises(StyleIDError, match="InstantID is unavailable: cannot import"):
        models.stylizer("instantid")


def test_weight_overrides():
    assert parse_weight_overrides(["styleid=/m/s", "instantid.base_model = x/y"]) == {"styleid": "/m/s", "instantid.base_model": "x/y"}
    for bad in (["styleid"], ["=x"], ["styleid="], ["vae=x"]):
        with pytest.raises(StyleIDError, match="expected KEY=VALUE|unknown key"):
            parse_weight_overrides(bad)
    models = Models("flux", device="cpu", weights={"infiniteyou.cpu_offload": "true", "infiniteyou.model_version": "sim_stage1"})
    assert models._framework_kwargs("infiniteyou") == {"cpu_offload": True, "model_version": "sim_stage1"}


def test_cli_serving_defaults():
    args = styleid_parser().parse_args(["demo"])
    assert (args.host, args.share, args.profile, args.concurrency) == ("127.0.0.1", False, "auto", 1)
    assert args.queue_size >= 1 and args.max_upload_mb == 10 and args.max_side == 4096
    assert styleid_parser().parse_args(["demo", "--share"]).share
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")


@pytest.mark.parametrize("argv, message", [
    (["--port", "70000"], "--port must be from 1 to 65535"),
    (["--concurrency", "0"], "--concurrency must be ≥ 1"),
    (["--weights", "nonsense"], "--weights: 'nonsense': expected KEY=VALUE"),
    (["--weights", "styleid=/x"], "use --model for the styleid weights"),
])
def test_cli_user_mistakes_are_one_line(argv, message, capsys):
    assert run(["demo", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("styleid demo: error: ") and message in err and "Traceback" not in err


def test_cli_launches_tiny_on_localhost_with_queue_and_limits(monkeypatch, empty_hub_cache):
    import gradio as gr

    seen = {}
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kw: seen.update(launch=kw, blocks=self))
    assert run(["demo", "--port", "7999", "--max-upload-mb", "5", "--concurrency", "2"]) == 0  # auto → tiny (offline)
    launch = seen["launch"]
    assert launch["server_name"] == "127.0.0.1" and launch["server_port"] == 7999 and launch["share"] is False
    assert launch["max_file_size"] == "25mb"  # Gradio's transport cap; the demo's own 5 MB limit names the file
    assert launch["show_error"] is False  # raw exception text never reaches the browser; gr.Error sentences do
    blocks = seen["blocks"]
    assert blocks._queue is not None and blocks._queue.max_size == 16
    heavy = [fn for fn in blocks.fns.values() if fn.concurrency_id == "models"]
    assert len(heavy) == 3 and all(fn.concurrency_limit == 2 for fn in heavy)
    text = str(blocks.config)
    assert "Tiny profile" in text and "fell back to" in text


def test_arcface_is_available_only_when_its_weights_can_be_had(empty_hub_cache, tmp_path, monkeypatch):
    from styleid_guidance.baselines import arcface

    assert weights.ARCFACE_FILE == arcface.ARCFACE_FILE and weights.RETINAFACE_FILE == "detection_Resnet50_Final.pth"
    assert "is not in" in weights.arcface_reason(None, str(tmp_path))  # offline, nothing on disk
    (tmp_path / weights.ARCFACE_FILE).write_bytes(b"x")
    assert weights.arcface_reason(None, str(tmp_path)) is None  # in --model-rootpath
    assert weights.arcface_reason(str(tmp_path), None) is None  # --arcface-model FOLDER
    assert "not found" in weights.arcface_reason(str(tmp_path / "nope.pth"), None)
    # online (the probe answers): downloadable on first use
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("STYLEID_OFFLINE", raising=False)
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: None)
    assert weights.arcface_reason(None, str(tmp_path / "empty")) is None


def test_retinaface_missing_offline_means_mtcnn_and_the_table_says_so(empty_hub_cache, tmp_path):
    models = Models("sd15", device="cpu", model_rootpath=str(tmp_path))
    assert models.detector == "mtcnn"
    row = {a.key: a for a in models.availability()}["detector"]
    assert row.reason is None and row.note.startswith("MTCNN; retinaface unavailable") and weights.RETINAFACE_FILE in row.note
    (tmp_path / weights.RETINAFACE_FILE).write_bytes(b"x")
    assert Models("sd15", device="cpu", model_rootpath=str(tmp_path)).detector == "retinaface"


def test_banner_is_green_only_when_everything_of_the_profile_runs(empty_hub_cache, tmp_path, monkeypatch):
    from styleid_guidance.demo.status import banner_classes, banner_markdown, status_markdown, summarize

    models = Models("sdxl", device="cpu", model_rootpath=str(tmp_path))
    text = banner_markdown(models)
    assert banner_classes(models) == [] and "real weights" not in text
    assert "6 of 6 components are unavailable" in text and "InfiniteYou, FLUX.1 Kontext: not in this profile" in text
    assert "**Verify** cannot run" in text and "**Stylize** cannot run" in text and "**JoJoGAN** cannot run" in text
    assert "✓" not in status_markdown(models).split("Face detector")[0]  # no component is claimed available

    # with every weight there: green, and it says what each tab runs
    from styleid_guidance.demo.profiles import Availability

    def all_there(self):
        return [Availability(k, k, self._profile_reason(k[3:]) if k.startswith("fw:") else None)
                for k in ("id:styleid", "id:arcface", "id:clip", "fw:ip_adapter", "fw:instantid", "fw:infiniteyou", "jojogan")]

    monkeypatch.setattr(Models, "availability", all_there)
    assert banner_classes(models) == ["real"] and summarize(models).excluded == ["fw:infiniteyou"]
    text = banner_markdown(models)
    assert "real weights; every component of the profile is available" in text
    assert "**Stylize** runs IP-Adapter, InstantID, guided by ArcFace, StyleID" in text
    assert banner_classes(models, fallback_note="fell back") == []


def test_a_missing_cuda_device_is_refused_at_launch(monkeypatch, capsys):
    import gradio as gr
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    launched = []
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kw: launched.append(kw))
    assert run(["demo", "--profile", "tiny", "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("styleid demo: error: --device") and "no CUDA GPU" in err and "Traceback" not in err
    assert launched == []
    with pytest.raises(StyleIDError, match="no CUDA GPU"):
        Models("tiny", device="cuda")
