"""`styleid distill`: the loss, the student, the batch order, a resumable run, the report and the command line."""
from __future__ import annotations

import json

import pytest
import torch

from styleid_guidance import StyleIDEncoder, build_identity_loss
from styleid_guidance.cli import run
from styleid_guidance.errors import StyleIDError
from styleid_guidance.train.distill.config import DistillConfig
from styleid_guidance.train.distill.student import StepBatches, build_student, distill_loss


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    from styleid_guidance.tiny.smoke_data import make_smoke_dataset

    return make_smoke_dataset(tmp_path_factory.mktemp("distill") / "smoke", 5, 4, [3], 64, 0)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    """A 48-d tiny teacher, so the 32-d tiny student architecture has to get its projection resized."""
    teacher = build_student("test-tiny", None, 48, seed=7).requires_grad_(False)
    return teacher.save_pretrained(tmp_path_factory.mktemp("teacher") / "teacher")


# ---------------------------------------------------------------------- the loss
def test_loss_is_zero_on_the_teacher_and_each_term_sees_its_own_error():
    t = torch.nn.functional.normalize(torch.randn(6, 16, generator=torch.Generator().manual_seed(0)), dim=-1)
    zero = distill_loss(t, t)
    assert float(zero["loss"]) == pytest.approx(0.0, abs=1e-6)
    rotated = t @ torch.linalg.qr(torch.randn(16, 16, generator=torch.Generator().manual_seed(1)))[0]
    out = distill_loss(rotated, t)  # same similarity structure, other directions
    assert float(out["rel"]) < 1e-6 and float(out["cos"]) > 0.1
    shuffled = distill_loss(t[torch.tensor([1, 0, 3, 2, 5, 4])], t)  # right directions, wrong images
    assert float(shuffled["rel"]) > 1e-3
    s = torch.randn(6, 16, requires_grad=True)
    distill_loss(s, t, lambda_cos=1.0, lambda_rel=10.0)["loss"].backward()
    assert torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0


# ---------------------------------------------------------------------- the student
def test_student_gets_the_teachers_width_trains_everything_and_round_trips(tmp_path):
    student = build_student("test-tiny", None, 48, seed=0)
    assert student.embedding_dim == 48 and student.config.lora.lora_rank == 0
    assert all(p.requires_grad for p in student.parameters())
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    folder = student.requires_grad_(False).save_pretrained(tmp_path / "student")
    loaded = StyleIDEncoder.from_pretrained(folder)
    assert torch.allclose(loaded.embed(x, crop="center"), student.embed(x, crop="center"), atol=1e-6)
    loss = build_identity_loss("styleid", x[:1], model=str(folder), crop="center", device="cpu")
    images = x.clone().requires_grad_(True)
    loss(images).sum().backward()
    assert images.grad.abs().sum() > 0  # usable as a guidance loss
    assert torch.equal(build_student("test-tiny", None, 48, seed=0).backbone.proj,
                       build_student("test-tiny", None, 48, seed=0).backbone.proj)  # seeded


def test_student_architecture_errors_are_one_line():
    with pytest.raises(StyleIDError, match="unknown open_clip model"):
        build_student("ViT-Q-99", None, 48)


# ---------------------------------------------------------------------- batch order
def test_batches_depend_only_on_seed_and_step_and_processes_do_not_overlap():
    whole = [b for b in StepBatches(10, 4, seed=3, start_step=0, max_steps=6)]
    resumed = [b for b in StepBatches(10, 4, seed=3, start_step=2, max_steps=6)]
    assert whole[2:] == resumed
    first_epoch = sum(whole, [])[:10]
    assert sorted(first_epoch) == list(range(10))  # every image once per epoch
    r0 = StepBatches(12, 3, seed=0, start_step=0, max_steps=2, rank=0, world=2)
    r1 = StepBatches(12, 3, seed=0, start_step=0, max_steps=2, rank=1, world=2)
    rows = sum(list(r0), []) + sum(list(r1), [])
    assert sorted(rows) == list(range(12))


# ---------------------------------------------------------------------- a run
def _args(smoke, teacher_dir, out, steps, *extra):
    return ["distill", "--data", str(smoke["train"]), "--teacher", str(teacher_dir), "--student", "test-tiny",
            "-o", str(out), "--max-steps", str(steps), "--images-per-batch", "8", "--num-workers", "0", "--lr", "1e-3",
            "--warmup-steps", "2", "--save-every", "3", "--log-every", "1", "--no-progress",
            "--lr-schedule", "constant", *extra]  # constant: a 3-step run is the first half of a 6-step one


def test_distill_learns_resumes_bit_identically_and_reports(smoke, teacher_dir, tmp_path):
    assert run(_args(smoke, teacher_dir, tmp_path / "whole", 6, "--eval-pairs", str(smoke["pairs"]),
                     "--report-size", "64")) == 0
    assert run(_args(smoke, teacher_dir, tmp_path / "split", 3)) == 0
    assert run(_args(smoke, teacher_dir, tmp_path / "split", 6)) == 0  # resumes from step 3
    whole = StyleIDEncoder.from_pretrained(tmp_path / "whole" / "final").state_dict()
    split = StyleIDEncoder.from_pretrained(tmp_path / "split" / "final").state_dict()
    assert whole.keys() == split.keys() and all(torch.equal(whole[k], split[k]) for k in whole)
    log = [json.loads(line) for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]
    assert log[-1]["loss"] < log[0]["loss"]
    resumed_log = [json.loads(line)["step"] for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert resumed_log == [1, 2, 3, 4, 5, 6]
    report = json.loads((tmp_path / "whole" / "distill_report.json").read_text())
    agreement, speed = report["agreement"], report["guidance_step"]
    assert agreement["pairs"] > 10 and 0 <= agreement["auroc_student"] <= 1 and 0 <= agreement["auroc_teacher"] <= 1
    assert -1 <= agreement["mean_cosine_centred"] <= agreement["mean_cosine"] + 1 and speed["speedup"] > 0
    assert (tmp_path / "whole" / "teacher_targets.safetensors").is_file()


def test_a_resume_that_changes_the_batch_is_refused(smoke, teacher_dir, tmp_path, capsys):
    assert run(_args(smoke, teacher_dir, tmp_path / "run", 3)) == 0
    assert run(_args(smoke, teacher_dir, tmp_path / "run", 6, "--images-per-batch", "4")) == 2
    assert "cannot resume" in capsys.readouterr().err


# ---------------------------------------------------------------------- settings and mistakes
def test_config_file_then_flags(tmp_path, smoke):
    from styleid_guidance.cli import build_parser
    from styleid_guidance.train.distill.cli import config_from_args

    cfg_file = tmp_path / "d.yaml"
    cfg_file.write_text(f"data: {smoke['train']}\nlambda-rel: 3\nmax_steps: 7\n")
    args = build_parser().parse_args(["distill", "--config", str(cfg_file), "--max-steps", "9"])
    cfg = config_from_args(args)
    assert (cfg.lambda_rel, cfg.max_steps, cfg.student) == (3.0, 9, "ViT-B-32")


@pytest.mark.parametrize("extra, message", [
    (["--lambda-cos", "0", "--lambda-rel", "0"], "nothing would be distilled"),
    (["--images-per-batch", "1"], "--images-per-batch must be"),
    (["--teacher", "/no/such/teacher"], "--teacher"),
    (["--eval-pairs", "/no/pairs.csv"], "--eval-pairs"),
    (["--student", "ViT-Q-99"], "unknown open_clip model"),
])
def test_mistakes_are_one_line_errors(extra, message, smoke, teacher_dir, tmp_path, capsys):
    assert run(_args(smoke, teacher_dir, tmp_path / "o", 2) + extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and err[0].startswith("styleid distill: error:")


def test_missing_data_is_an_error():
    with pytest.raises(StyleIDError, match="data is required"):
        DistillConfig()


# ---------------------------------------------------------------------- the shrunk teacher (`--student teacher`)
def _deep_teacher(layers: int = 4, patch: int = 8) -> StyleIDEncoder:
    """A 64-px CLIP ViT teacher with `layers` blocks and `patch`-px patches (test-tiny has one block)."""
    import dataclasses

    from styleid_guidance.encoder.backbones import vit_from_kwargs, vit_kwargs_from_open_clip

    base = StyleIDEncoder.from_open_clip("test-tiny", pretrained=None, lora_rank=0)
    vit = dict(vit_kwargs_from_open_clip(base.backbone, base.config), layers=layers, patch_size=patch)
    torch.manual_seed(3)
    config = dataclasses.replace(base.config, backbone={"vit": vit})
    return StyleIDEncoder(vit_from_kwargs(vit), config).eval().requires_grad_(False)


def test_shrunk_teacher_at_full_size_is_the_teacher_and_smaller_ones_reload(tmp_path):
    from styleid_guidance.train.distill.student import shrink_teacher

    teacher = _deep_teacher()
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    same = shrink_teacher(teacher, layers=4, patch=8)
    assert torch.allclose(same.embed(x, crop="center"), teacher.embed(x, crop="center"), atol=1e-5)
    small = shrink_teacher(teacher)  # defaults: half the blocks, 16-px patches
    vit = small.config.backbone["vit"]
    assert (vit["layers"], vit["patch_size"], small.embedding_dim) == (2, 16, teacher.embedding_dim)
    assert small.backbone.positional_embedding.shape[0] == 1 + (64 // 16) ** 2
    assert all(p.requires_grad for p in small.parameters())
    loaded = StyleIDEncoder.from_pretrained(small.requires_grad_(False).save_pretrained(tmp_path / "s"))
    assert torch.allclose(loaded.embed(x, crop="center"), small.embed(x, crop="center"), atol=1e-6)
    assert not torch.allclose(small.embed(x, crop="center"), teacher.embed(x, crop="center"), atol=1e-3)


@pytest.mark.parametrize("layers, patch, message", [(5, 16, "layers must be from 1"), (2, 12, "patch must be a multiple"),
                                                    (2, 24, "patch must be a multiple")])
def test_shrunk_teacher_impossible_shapes_are_errors(layers, patch, message):
    from styleid_guidance.train.distill.student import shrink_teacher

    with pytest.raises(StyleIDError, match=message):
        shrink_teacher(_deep_teacher(), layers=layers, patch=patch)


def test_distill_into_the_shrunk_teacher_runs_and_reloads(smoke, tmp_path):
    teacher_dir = _deep_teacher().save_pretrained(tmp_path / "deep")
    args = _args(smoke, teacher_dir, tmp_path / "run", 2)
    args[args.index("--student") + 1] = "teacher"
    assert run(args + ["--student-layers", "3"]) == 0
    student = StyleIDEncoder.from_pretrained(tmp_path / "run" / "final")
    assert (student.config.backbone["vit"]["layers"], student.config.backbone["vit"]["patch_size"]) == (3, 16)


def test_student_shape_flags_need_the_teacher_student(smoke, teacher_dir, tmp_path, capsys):
    assert run(_args(smoke, teacher_dir, tmp_path / "o", 2) + ["--student-layers", "2"]) == 2
    assert "--student teacher" in capsys.readouterr().err
