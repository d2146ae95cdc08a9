"""The trainer stops cleanly: divergence, collapse and Ctrl-C never leave a broken final/ behind."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from styleid_guidance.train.runs.checkpoint import list_checkpoints
from styleid_guidance.cli import run
from styleid_guidance.tiny.smoke_data import make_smoke_dataset
from support import TINY_TRAIN, subprocess_env


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    return make_smoke_dataset(tmp_path_factory.mktemp("smoke"), train_ids=16, eval_ids=8, levels=(2, 5), size=64)


def _one_error_line(capsys) -> str:
    """The run's one error line, last on stderr (after the trainer's own log lines, if it started)."""
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("styleid train: error: ")]
    assert len(errors) == 1 and err[-1] == errors[0], err
    return errors[0]


@pytest.mark.parametrize("flag,value", [("--lr", "inf"), ("--lr", "nan"), ("--lr", "0"), ("--weight-decay", "-1"),
                                        ("--temperature", "0"), ("--angular-scale", "nan"), ("--lambda-reg", "inf"),
                                        ("--margin", "2"), ("--max-grad-norm", "-0.5"), ("--collapse-threshold", "1.5")])
def test_impossible_numbers_are_refused_up_front(tmp_path, capsys, flag, value):
    assert run(["train", "--output", str(tmp_path / "o"), "--max-steps", "0", *TINY_TRAIN, flag, value]) == 2
    line = _one_error_line(capsys)
    assert line.startswith("styleid train: error: ") and flag in line and value in line
    assert not (tmp_path / "o").exists()


def test_missing_eval_pairs_is_named_before_training(tmp_path, smoke, capsys):
    assert run(["train", "--data", str(smoke["train"]), "--output", str(tmp_path / "o"), "--max-steps", "5",
                       "--eval-pairs", str(tmp_path / "nope.csv"), *TINY_TRAIN]) == 2
    assert "--eval-pairs" in _one_error_line(capsys) and not (tmp_path / "o").exists()


def test_divergence_stops_before_final_and_keeps_the_last_good_checkpoint(tmp_path, smoke, capsys):
    out = tmp_path / "run"
    args = ["--data", str(smoke["train"]), "--output", str(out), "--eval-pairs", str(smoke["pairs"]),
            "--eval-every", "1", "--save-every", "1", "--max-steps", "20", *TINY_TRAIN]
    # one sane step and checkpoint, then an absurd learning rate on the resumed run
    assert run(["train", *args, "--max-steps", "1"]) == 0
    capsys.readouterr()
    final_before = (out / "final" / "adapter_model.safetensors").read_bytes()
    assert run(["train", *args, "--lr", "1e30"]) == 2
    line = _one_error_line(capsys)
    assert "training stopped at step" in line and "non-finite" in line and "--lr (now 1e+30)" in line, line
    assert "the last good checkpoint is" in line and "final/ was not written" in line, line
    assert (out / "final" / "adapter_model.safetensors").read_bytes() == final_before  # never overwritten
    steps = [s for s, _ in list_checkpoints(out)]
    assert 1 in steps
    for _, folder in list_checkpoints(out):
        assert all(torch.isfinite(t).all() for t in load_file(str(folder / "trainable.safetensors")).values())
    losses = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert not any(isinstance(v, float) and v != v for r in losses for v in r.values())  # no NaN logged


def test_collapse_guard_stops_the_run(tmp_path, smoke, capsys):
    # the untrained tiny encoder already puts batches at mean cosine ≈ 0.8: a 0.3 threshold must fire
    out = tmp_path / "run"
    code = run(["train", "--data", str(smoke["train"]), "--output", str(out), "--max-steps", "20", "--save-every", "1",
                       "--collapse-threshold", "0.3", "--collapse-patience", "3", *TINY_TRAIN])
    assert code == 2
    line = _one_error_line(capsys)
    assert "step 3: the embeddings collapsed" in line and "final/ was not written" in line, line
    assert not (out / "final").exists()
    assert list_checkpoints(out) == []  # nothing was saved while the spread was suspect
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    assert all(0.3 <= r["cos"] <= 1.0 and 0 < r["cos0"] <= 1.0 for r in records)


def test_ctrl_c_checkpoints_and_the_rerun_resumes_to_the_same_weights(tmp_path, smoke):
    args = ["-m", "styleid_guidance.train", "--data", str(smoke["train"]), "--max-steps", "40", "--save-every", "100", *TINY_TRAIN]
    ref, out = tmp_path / "uninterrupted", tmp_path / "interrupted"
    subprocess.run([sys.executable, *args, "--output", str(ref)], env=subprocess_env(), check=True, capture_output=True, timeout=300)
    proc = subprocess.Popen([sys.executable, *args, "--output", str(out)], env=subprocess_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    log = out / "metrics.jsonl"
    while proc.poll() is None and time.time() < deadline and not (log.exists() and len(log.read_text().splitlines()) >= 3):
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert not (out / "final").exists()
    (step, folder), = list_checkpoints(out)  # --save-every 100 never fired: this is the interrupt's
    assert 3 <= step < 40
    assert f"interrupted at step {step} (saved {folder})" in err and f"resume from step {step}" in err

    resumed = subprocess.run([sys.executable, *args, "--output", str(out)], env=subprocess_env(), capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed from {folder} at step {step}" in resumed.stderr
    a, b = load_file(str(ref / "final/adapter_model.safetensors")), load_file(str(out / "final/adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
