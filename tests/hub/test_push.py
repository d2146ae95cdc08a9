"""`styleid push`: the dry-run folder is exactly the upload (card re-parses with ModelCard.load, its eval results
equal metrics.json, the weights reload to identical embeddings); the real push is one create_repo + one
upload_folder (HfApi mocked: tests never contact the network); no token / offline / foreign eval = one line."""
from __future__ import annotations

import json
import time

import pytest
import torch

from styleid_guidance import StyleIDEncoder
from styleid_guidance.cli import run
from styleid_guidance.tiny.smoke_data import make_smoke_dataset


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("push")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        enc = StyleIDEncoder.from_open_clip("test-tiny", pretrained=None, lora_rank=2)
        for n, p in enc.named_parameters():  # a non-zero adapter, so a merged export differs from the base model
            if "lora_B" in n:
                p.data.normal_(0, 0.05)
    model = enc.save_pretrained(root / "run" / "final")
    data = make_smoke_dataset(root / "data", train_ids=2, eval_ids=3, levels=(2, 5), size=48)
    assert run(["eval", "--model", str(model), "--pairs", str(data["pairs"]), "-o", str(root / "ev"), "--crop", "center",
                "--no-progress", "--device", "cpu"]) in (0, 2)
    assert (root / "ev" / "metrics.json").exists()
    other = StyleIDEncoder.from_open_clip("test-tiny", pretrained=None, lora_rank=2).save_pretrained(root / "other")
    return {"root": root, "run": root / "run", "model": model, "eval": root / "ev", "other": other, "pairs": data["pairs"]}


def _run(argv, capsys):
    code = run(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _images():
    g = torch.Generator().manual_seed(0)
    return torch.rand(3, 3, 64, 64, generator=g)


def test_dry_run_card_and_weights_round_trip(setup, tmp_path, capsys):
    from huggingface_hub import ModelCard

    out = tmp_path / "upload"
    code, stdout, err = _run(["push", str(setup["run"]), "--repo-id", "me/styleid-test", "--eval", str(setup["eval"]),
                              "--dry-run", str(out)], capsys)
    assert code == 0, err
    assert stdout.strip() == str(out) and "nothing was uploaded" in err
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert "README.md" in files and not any(f.endswith((".bin", ".pt", ".pth", ".ckpt", ".pkl")) for f in files)
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "styleid-guidance" and card.data.pipeline_tag == "image-feature-extraction"
    assert card.data.license == "apache-2.0" and "styleid" in card.data.tags and "me/styleid-test" in card.text
    metrics = json.loads((setup["eval"] / "metrics.json").read_text())["styleid"]
    got = {(r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert got[("all", "roc_auc")] == pytest.approx(metrics["overall"]["auroc"])
    assert got[("all", "accuracy_at_0.4")] == pytest.approx(metrics["overall"]["acc@0.4"])
    for split, report in metrics["split"].items():
        if report["auroc"] is not None:
            assert got[(split, "roc_auc")] == pytest.approx(report["auroc"])
    want = StyleIDEncoder.from_pretrained(str(setup["model"])).eval().embed(_images(), crop="center", precision="fp32")
    back = StyleIDEncoder.from_pretrained(str(out)).eval().embed(_images(), crop="center", precision="fp32")
    torch.testing.assert_close(back, want, atol=0, rtol=0)


def test_dry_run_transformers_format(setup, tmp_path, capsys):
    from huggingface_hub import ModelCard

    out = tmp_path / "tf"
    code, _, err = _run(["push", str(setup["model"]), "--repo-id", "me/t", "--format", "transformers", "--dry-run", str(out)], capsys)
    assert code == 0, err
    assert (out / "config.json").exists() and (out / "model.safetensors").exists()
    assert ModelCard.load(out / "README.md").data.library_name == "transformers"
    want = StyleIDEncoder.from_pretrained(str(setup["model"])).eval().embed(_images(), crop="center", precision="fp32")
    back = StyleIDEncoder.from_pretrained(str(out)).eval().embed(_images(), crop="center", precision="fp32")
    torch.testing.assert_close(back, want, atol=1e-5, rtol=0)  # LoRA merged into the weights: equal up to rounding


class FakeApi:
    calls: list = []
    has_card = False

    def __init__(self, token=None):
        FakeApi.calls.append(("init", token))

    def create_repo(self, repo_id, **kw):
        FakeApi.calls.append(("create_repo", repo_id, kw))

    def file_exists(self, repo_id, filename, **kw):
        return FakeApi.has_card

    def upload_folder(self, **kw):
        from pathlib import Path

        FakeApi.calls.append(("upload_folder", kw, sorted(p.name for p in Path(kw["folder_path"]).rglob("*") if p.is_file())))
        return type("Info", (), {"commit_url": "https://hf.co/me/x/commit/abc", "pr_url": "https://hf.co/me/x/discussions/1" if kw.get("create_pr") else None})()


@pytest.fixture
def hub(monkeypatch):
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("STYLEID_OFFLINE", raising=False)
    monkeypatch.setenv("HF_TOKEN", "hf_fake_token_for_tests")
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr("styleid_guidance.hub.resolve.reachable", lambda url, timeout=2.0: (True, ""))
    FakeApi.calls, FakeApi.has_card = [], False
    return FakeApi


def test_push_is_one_create_repo_and_one_commit(setup, hub, capsys):
    code, out, err = _run(["push", str(setup["run"]), "--repo-id", "me/x", "--private", "--create-pr", "--revision", "dev"], capsys)
    assert code == 0, err
    kinds = [c[0] for c in hub.calls]
    assert kinds == ["init", "create_repo", "upload_folder"] and hub.calls[0][1] == "hf_fake_token_for_tests"
    assert hub.calls[1][2]["private"] is True
    kw, names = hub.calls[2][1], hub.calls[2][2]
    assert kw["create_pr"] is True and kw["revision"] == "dev" and "README.md" in names
    assert out.strip() == "https://hf.co/me/x/discussions/1"


def test_an_existing_card_is_kept_unless_asked(setup, hub, capsys):
    hub.has_card = True
    code, _, err = _run(["push", str(setup["model"]), "--repo-id", "me/x"], capsys)
    assert code == 2 and "--overwrite-card" in err and "upload_folder" not in [c[0] for c in hub.calls]
    assert _run(["push", str(setup["model"]), "--repo-id", "me/x", "--overwrite-card"], capsys)[0] == 0


def test_no_token_and_offline_fail_at_once(setup, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    code, _, err = _run(["push", str(setup["model"]), "--repo-id", "me/x"], capsys)
    assert code == 2 and "offline" in err and "--dry-run" in err and len(err.strip().splitlines()) == 1
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("STYLEID_OFFLINE", raising=False)
    monkeypatch.setenv("HF_TOKEN", "")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hfhome"))  # no stored token either
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    code, _, err = _run(["push", str(setup["model"]), "--repo-id", "me/x"], capsys)
    assert code == 2 and "no Hugging Face token" in err and time.monotonic() - start < 10


@pytest.mark.parametrize("argv, message", [
    (lambda s: [str(s["other"]), "--repo-id", "me/x", "--eval", str(s["eval"]), "--dry-run", "{tmp}/o"], "not an evaluation of"),
    (lambda s: [str(s["model"]), "--repo-id", "me/x", "--eval", str(s["root"]), "--dry-run", "{tmp}/o"], "metrics.json"),
    (lambda s: [str(s["root"] / "nope"), "--repo-id", "me/x", "--dry-run", "{tmp}/o"], "not a folder"),
    (lambda s: [str(s["root"] / "data"), "--repo-id", "me/x", "--dry-run", "{tmp}/o"], "styleid_config.json"),
    (lambda s: [str(s["model"]), "--repo-id", "noslash", "--dry-run", "{tmp}/o"], "--repo-id"),
])
def test_bad_push_is_one_line_and_writes_nothing(setup, tmp_path, capsys, argv, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in argv(setup)]
    code, out, err = _run(["push", *args], capsys)
    assert code == 2 and message in err.strip().splitlines()[-1] and "Traceback" not in err, err
    assert not (tmp_path / "o").exists()
