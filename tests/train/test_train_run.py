"""The trainer end to end on CPU: config precedence, export, learning, kill-and-resume, 2 processes."""
from __future__ import annotations

import importlib.util
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from styleid_guidance import StyleIDEncoder
from styleid_guidance.errors import StyleIDError
from styleid_guidance.train.runs.checkpoint import list_checkpoints
from styleid_guidance.cli import run
from styleid_guidance.cli.config_options import build_config, load_config_file
from styleid_guidance.train.config import TrainConfig
from styleid_guidance.tiny.smoke_data import make_smoke_dataset
from styleid_guidance.train.trainer import build_encoder, train
from support import REPO, TINY_TRAIN, free_port, subprocess_env


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    return make_smoke_dataset(tmp_path_factory.mktemp("smoke"), train_ids=24, eval_ids=12, levels=(2, 5), size=64)


def _records(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]


def test_config_file_then_flags(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("backbone: test-tiny\nids-per-batch: 7\nlr: 0.001\nmax_steps: 0\n")
    values = load_config_file(cfg_file, TrainConfig)
    cfg = build_config(TrainConfig, values, {"lr": 0.5, "seed": None})
    assert (cfg.backbone, cfg.ids_per_batch, cfg.lr, cfg.seed, cfg.pretrained) == ("test-tiny", 7, 0.5, 0, None)
    (tmp_path / "c.json").write_text('{"not_an_option": 1}')
    with pytest.raises(StyleIDError, match="unknown option"):
        load_config_file(tmp_path / "c.json", TrainConfig)
    with pytest.raises(StyleIDError, match="data is required"):
        build_config(TrainConfig, {}, {"max_steps": 5})


def test_a_renamed_option_in_a_config_file_is_told_its_new_name(tmp_path, capsys):
    cfg_file = tmp_path / "old.yaml"
    cfg_file.write_text("backbone: test-tiny\nmax_steps: 0\nscale: 16\n")
    assert run(["train", "--config", str(cfg_file), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"styleid train: error: --config {cfg_file}: option 'scale' is now called 'angular_scale'"]


def test_max_steps_zero_exports_the_initial_encoder(tmp_path):
    out = tmp_path / "run"
    assert run(["train", "--output", str(out), "--max-steps", "0", *TINY_TRAIN]) == 0
    enc = StyleIDEncoder.from_pretrained(out / "final")
    ref = build_encoder(build_config(TrainConfig, {}, {"backbone": "test-tiny", "max_steps": 0, "lora_alpha": 16.0}))
    x = torch.rand(2, 3, 64, 64)
    assert torch.allclose(enc.embed(x, crop="center"), ref.embed(x, crop="center"), atol=1e-6)


def test_cli_user_errors_are_one_line(tmp_path, capsys):
    assert run(["train", "--data", str(tmp_path / "nope"), "--output", str(tmp_path / "o"), "--max-steps", "2", *TINY_TRAIN]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("styleid train: error: --data") and "no such folder" in err[0]
    assert run(["train", "--output", str(tmp_path / "o"), "--max-steps", "0", *TINY_TRAIN, "--lr", "-1"]) == 2
    assert "--lr must be a finite number > 0" in capsys.readouterr().err
    if importlib.util.find_spec("tensorboard") is None:
        assert run(["train", "--output", str(tmp_path / "o"), "--max-steps", "0", "--report-to", "tensorboard", *TINY_TRAIN]) == 2
        assert "tensorboard is not installed" in capsys.readouterr().err


def test_short_training_raises_heldout_auroc(tmp_path, smoke):
    out = tmp_path / "run"
    cfg = build_config(TrainConfig, {}, {"data": str(smoke["train"]), "output": str(out), "backbone": "test-tiny", "max_steps": 40,
                            "ids_per_batch": 8, "images_per_id": 2, "lr": 1e-2, "lora_alpha": 16.0, "num_workers": 0,
                            "eval_pairs": str(smoke["pairs"]), "eval_every": 40, "save_every": 20, "keep_last": 1,
                            "log_every": 10})
    final = train(cfg, progress=False)
    evals = [r for r in _records(out) if "eval" in r]
    assert [r["step"] for r in evals] == [0, 40]
    before, after = evals[0]["eval"]["auroc"], evals[1]["eval"]["auroc"]
    assert after > before + 0.03, (before, after)
    losses = [r["loss"] for r in _records(out) if "loss" in r]
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert [s for s, _ in list_checkpoints(out)] == [40]  # keep_last=1 pruned step 20
    trained = StyleIDEncoder.from_pretrained(final)
    x = torch.rand(2, 3, 64, 64)
    assert not torch.allclose(trained.embed(x, crop="center"), build_encoder(cfg).embed(x, crop="center"), atol=1e-4)
    # the exported folder converts to the authors' transformers format
    assert (trained.export_transformers(tmp_path / "hf") / "model.safetensors").is_file()


def test_sigkill_and_resume_ends_with_the_same_weights(tmp_path, smoke):
    args = ["-m", "styleid_guidance.train", "--data", str(smoke["train"]), "--max-steps", "30", "--save-every", "3", "--keep-last", "2", *TINY_TRAIN]
    ref_out, out = tmp_path / "uninterrupted", tmp_path / "killed"
    subprocess.run([sys.executable, *args, "--output", str(ref_out)], env=subprocess_env(), check=True, capture_output=True, timeout=300)

    proc = subprocess.Popen([sys.executable, *args, "--output", str(out)], env=subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not list_checkpoints(out) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (out / "final").exists()
    killed_at = list_checkpoints(out)[-1][0]
    assert 3 <= killed_at < 30

    resumed = subprocess.run([sys.executable, *args, "--output", str(out)], env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stderr and f"step {killed_at}" in resumed.stderr
    for name in ("final/adapter_model.safetensors", "checkpoints/step-00000030/trainable.safetensors"):
        a, b = load_file(str(ref_out / name)), load_file(str(out / name))
        assert a.keys() == b.keys() and a
        for k in a:
            assert torch.equal(a[k], b[k]), f"{name}:{k} differs after resume"
    steps = [r["step"] for r in _records(out) if "loss" in r]
    assert steps == list(range(1, 31)), "the metrics log has a gap or duplicate after resume"


def test_incompatible_resume_is_refused_with_one_line(tmp_path, smoke, capsys):
    out = tmp_path / "run"
    common = ["--data", str(smoke["train"]), "--output", str(out), "--save-every", "2", *TINY_TRAIN]
    assert run(["train", *common, "--max-steps", "2"]) == 0
    capsys.readouterr()
    assert run(["train", *common, "--max-steps", "4", "--ids-per-batch", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot resume" in err[0] and "ids_per_batch 4 → 3" in err[0]
    # changing only the length of the run (or the learning rate) is fine: it continues from step 2
    assert run(["train", *common, "--max-steps", "3", "--lr", "5e-3"]) == 0
    assert [(r["step"], r["lr"]) for r in _records(out) if "loss" in r] == [(1, 1e-2), (2, 1e-2), (3, 5e-3)]
    assert [s for s, _ in list_checkpoints(out)] == [2, 3]


def test_two_process_cpu_run(tmp_path, smoke):
    # `accelerate launch --cpu --num_processes 2` starts ONE process unless MPI is configured (accelerate
    # 1.x simple launcher); torchrun-style launching with ACCELERATE_USE_CPU gives two gloo CPU ranks
    out = tmp_path / "ddp"
    accelerate = Path(sys.executable).with_name("accelerate")
    cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "--main_process_port", str(free_port()),
           "-m", "styleid_guidance.train", "--data", str(smoke["train"]), "--output", str(out), "--max-steps", "4", "--save-every", "4", *TINY_TRAIN]
    run = subprocess.run(cmd, env={**subprocess_env(), "ACCELERATE_USE_CPU": "1"}, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stderr.count("wrote the trained encoder") == 1
    assert [s for s, _ in list_checkpoints(out)] == [4]
    ckpt = list_checkpoints(out)[0][1]
    assert sorted(p.name for p in ckpt.glob("rng-*.pt")) == ["rng-0.pt", "rng-1.pt"]
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["fingerprint"]["num_processes"] == 2
    assert (out / "final" / "adapter_model.safetensors").is_file()
    records = [r for r in _records(out) if "loss" in r]
    assert len(records) == 4  # one writer, not two
    # L_scon contrasts each rank's 8 images with both ranks' 16: its chance level is ln 15, not ln 7
    assert records[0]["scon"] > 0.5 * (math.log(7) + math.log(15)), records[0]
    StyleIDEncoder.from_pretrained(out / "final")


@pytest.fixture
def fresh_accelerator_state():
    # accelerate keeps one process-wide state; a different mixed precision needs a clean one (this is
    # how accelerate's own tests switch settings in one process)
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state()
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state()
    GradientState._reset_state()


def test_bf16_grad_checkpointing_and_accumulation(tmp_path, smoke, fresh_accelerator_state):
    out = tmp_path / "amp"
    assert run(["train", "--data", str(smoke["train"]), "--output", str(out), "--max-steps", "3", "--save-every", "3",
                       *TINY_TRAIN, "--mixed-precision", "bf16", "--grad-checkpointing", "--grad-accum", "2",
                       "--lr-schedule", "cosine", "--warmup-steps", "1"]) == 0
    records = [r for r in _records(out) if "loss" in r]
    assert [r["step"] for r in records] == [1, 2, 3]
    assert all(np.isfinite(r["loss"]) and r["scon"] > 0 for r in records)
    # one warm-up step, then cosine from the peak down to 0 at step 3
    assert [r["lr"] for r in records] == pytest.approx([1e-2, 1e-2, 5e-3])
    state = json.loads((list_checkpoints(out)[-1][1] / "trainer_state.json").read_text())
    assert state["sampler"]["batch"] == 6  # 3 steps × 2 accumulated batches


@pytest.mark.parametrize("schedule", ["constant", "cosine", "linear"])
def test_lr_schedule_warms_up_from_the_first_step_unlike_diffusers(schedule):
    """Why the schedule is ours: diffusers' get_scheduler starts its warm-up at factor 0 (a lost first update)."""
    from diffusers.optimization import get_scheduler

    from styleid_guidance.train.step import lr_lambda

    cfg = TrainConfig(lr_schedule=schedule, warmup_steps=4, max_steps=20, data="unused")
    factors = [lr_lambda(cfg)(s) for s in range(21)]
    assert factors[:5] == [0.25, 0.5, 0.75, 1.0, 1.0]  # the first update already moves
    assert factors[20] == (1.0 if schedule == "constant" else pytest.approx(0.0, abs=1e-12))
    assert all(a >= b for a, b in zip(factors[3:], factors[4:]))  # never rises after warm-up
    theirs = get_scheduler({"constant": "constant_with_warmup"}.get(schedule, schedule),
                           torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), num_warmup_steps=4,
                           num_training_steps=20).lr_lambdas[0]
    assert theirs(0) == 0.0 and factors[0] > 0
