"""Every user mistake is one line and exit code 2; outputs are checked before the work and never half-written."""
from __future__ import annotations

import errno
import json
import re
import os

import pytest
import torch

from safetensors.torch import load_file, save_file

from styleid_guidance import StyleIDEncoder
from styleid_guidance.cli import run
from styleid_guidance.errors import StyleIDError
from styleid_guidance.files.atomic import atomic_write

FAST_TINY = ["--tiny", "--max-steps", "1", "--sample-every", "0", "--no-align"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    return StyleIDEncoder.from_open_clip("test-tiny", pretrained=None).save_pretrained(tmp_path_factory.mktemp("m") / "tiny")


@pytest.fixture
def photos(tmp_path, astronaut, camera):
    astronaut.resize((128, 128)).save(tmp_path / "a.png")
    camera.resize((128, 128)).save(tmp_path / "b.png")
    (tmp_path / "a_file").write_text("not a folder")
    (tmp_path / "adir.npy").mkdir()
    return tmp_path


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


# (argv template, text the one error line must contain); {t} = the test's folder, {m} = a tiny model folder
CASES = [
    (["verify", "--model", "{m}", "--crop", "center", "--threshold", "nan", "{t}/a.png", "{t}/b.png"], "--threshold"),
    (["verify", "--model", "{m}", "--device", "cuda", "{t}/a.png", "{t}/b.png"], "no CUDA GPU"),
    (["verify", "--model", "{m}", "--device", "gpu9", "{t}/a.png", "{t}/b.png"], "--device gpu9"),
    (["embed", "--model", "{m}", "{t}", "-o", "{t}/e.npy", "--batch-size", "0"], "--batch-size: must be ≥ 1"),
    (["embed", "--model", "{m}", "{t}", "-o", "{t}/e.npy", "--batch-size", "-3"], "--batch-size: must be ≥ 1"),
    (["embed", "--model", "{m}", "--crop", "center", "{t}", "-o", "{t}/adir.npy"], "is a folder"),
    (["embed", "--model", "{m}", "--crop", "center", "{t}", "-o", "{t}/a_file/e.npy"], "is a file, not a folder"),
    (["embed", "--model", "{m}", "--crop", "center", "{t}", "-o", "/proc/styleid-nope/e.npy"], "cannot write"),
    (["train", "--backbone", "test-tiny", "--max-steps", "0", "--output", "{t}/a_file"], "is a file; give a folder"),
    (["train", "--backbone", "test-tiny", "--max-steps", "0", "--output", "{t}/o", "--lr", "inf"], "--lr"),
    (["jojogan", "train", "{t}/a.png", "-o", "{t}/s.pt", "--size", "7", *FAST_TINY], "power of two"),
    (["jojogan", "train", "{t}/a.png", "-o", "{t}/s.pt", "--id_weight", "nan", *FAST_TINY], "--id_weight"),
    (["jojogan", "train", "{t}/a.png", "-o", "{t}/s.pt", "--lr", "inf", *FAST_TINY], "--lr"),
    (["jojogan", "train", "{t}/a.png", "-o", "{t}/a.png", *FAST_TINY], "a style checkpoint is a .pt file"),
    (["jojogan", "stylize", "{t}/a.png", "--style-ckpt", "{t}/s.pt", "-o", "{t}/a_file", "--tiny"], "is a file; give a folder"),
    (["smoke-data", "{t}/a_file"], "is a file; give a folder"),
    (["smoke-data", "{t}/s", "--image-size", "0"], "--image-size"),
]


@pytest.mark.parametrize("argv, message", CASES, ids=[" ".join(c[0][:2]) + f" [{c[1]}]" for c in CASES])
def test_user_mistakes_are_one_line(argv, message, model_dir, photos, capsys):
    code = run([a.format(t=photos, m=model_dir) for a in argv])
    line = _one_line(capsys)
    assert code == 2 and message in line, line
    assert line.startswith("styleid ") and ": error: " in line


def test_output_is_checked_before_any_work(model_dir, photos, capsys, monkeypatch):
    import styleid_guidance.encoder.model as encoder_module

    monkeypatch.setattr(encoder_module.StyleIDEncoder, "from_pretrained", classmethod(lambda *a, **k: pytest.fail("loaded a model")))
    assert run(["embed", "--model", str(model_dir), str(photos), "-o", "/proc/styleid-nope/e.npy"]) == 2
    assert "cannot write" in _one_line(capsys)


def test_jojogan_never_overwrites_a_checkpoint_silently(photos, capsys):
    out = photos / "s.pt"
    assert run(["jojogan", "train", str(photos / "a.png"), "-o", str(out), *FAST_TINY, "--id_loss", "none",
                "--sample-every", "1"]) == 0
    capsys.readouterr()
    before = out.read_bytes()
    assert run(["jojogan", "train", str(photos / "a.png"), "-o", str(out), *FAST_TINY, "--id_loss", "none"]) == 2
    assert "pass --overwrite" in _one_line(capsys) and out.read_bytes() == before
    grids = sorted((photos / "s_samples").glob("iter_*.png"))
    assert [g.name for g in grids] == ["iter_0000.png", "iter_0001.png"]
    assert run(["jojogan", "train", str(photos / "a.png"), "-o", str(out), *FAST_TINY, "--id_loss", "none",
                "--overwrite", "--sample-every", "0"]) == 0
    assert not list((photos / "s_samples").glob("iter_*.png"))  # old grids do not sit beside the new checkpoint


# ---------------------------------------------------------------------- damaged model folders
def _damage(folder, how):
    if how == "truncated backbone":
        data = (folder / "backbone.safetensors").read_bytes()
        (folder / "backbone.safetensors").write_bytes(data[: len(data) // 3])
    elif how == "empty backbone":
        (folder / "backbone.safetensors").write_bytes(b"")
    elif how == "bad config json":
        (folder / "styleid_config.json").write_text("{not json")
    elif how == "bad adapter json":
        (folder / "adapter_config.json").write_text("[")
    elif how == "config missing a field":
        cfg = json.loads((folder / "styleid_config.json").read_text())
        del cfg["image_size"]
        (folder / "styleid_config.json").write_text(json.dumps(cfg))
    elif how in ("adapter wrong shapes", "adapter missing keys", "adapter extra keys"):
        state = load_file(str(folder / "adapter_model.safetensors"))
        key = sorted(state)[0]
        if how == "adapter wrong shapes":
            state[key] = torch.zeros(3, 3)
        elif how == "adapter missing keys":
            del state[key]
        else:
            state["base_model.model.extra.lora_A.weight"] = torch.zeros(2, 2)
        save_file(state, str(folder / "adapter_model.safetensors"))


DAMAGES = {"truncated backbone": "truncated", "empty backbone": "not a readable safetensors file",
           "bad config json": "not valid JSON", "bad adapter json": "not valid JSON",
           "config missing a field": "missing field(s) image_size", "adapter wrong shapes": "has shape",
           "adapter missing keys": "missing 1 adapter weights", "adapter extra keys": "unexpected adapter weights"}


@pytest.mark.parametrize("how", DAMAGES)
def test_damaged_model_folder_is_one_line(how, tmp_path, photos, capsys):
    torch.manual_seed(0)
    folder = StyleIDEncoder.from_open_clip("test-tiny", pretrained=None, lora_rank=2).save_pretrained(tmp_path / "m")
    _damage(folder, how)
    with pytest.raises(StyleIDError, match=re.escape(DAMAGES[how])):
        StyleIDEncoder.from_pretrained(folder)
    assert run(["verify", "--model", str(folder), "--crop", "center", str(photos / "a.png"), str(photos / "b.png")]) == 2
    line = _one_line(capsys)
    assert DAMAGES[how] in line and "--model" in line


class _Payload:
    def __reduce__(self):
        return (os.getcwd, ())


def test_a_pickle_that_runs_code_is_refused_without_suggesting_unsafe_loading(tmp_path, capsys, photos):
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "clip_vision_model"}))
    torch.save({"vision_model.x": _Payload()}, folder / "pytorch_model.bin")  # a code-running pickle, as torch writes it
    assert run(["verify", "--model", str(folder), "--crop", "center", str(photos / "a.png"), str(photos / "b.png")]) == 2
    line = _one_line(capsys)
    assert "refused" in line and "weights_only=False" not in line and "safetensors" in line


# ---------------------------------------------------------------------- data safety
def test_atomic_writes_respect_the_umask_and_keep_the_old_file_on_a_full_disk(tmp_path, monkeypatch):
    old = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "x.txt") as tmp:
            tmp.write_text("first")
        assert (tmp_path / "x.txt").stat().st_mode & 0o777 == 0o644
        folder = StyleIDEncoder.from_pretrained("test-tiny").save_pretrained(tmp_path / "enc")
        assert all(p.stat().st_mode & 0o777 == 0o644 for p in folder.iterdir())
        assert folder.stat().st_mode & 0o777 == 0o755
    finally:
        os.umask(old)

    def full(*_):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(StyleIDError, match=r"x\.txt: cannot write \(No space left on device\); free some space"):
        with atomic_write(tmp_path / "x.txt") as tmp:
            tmp.write_text("second")
    assert (tmp_path / "x.txt").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".x.txt")] == []  # no temp file left


def test_npy_embeddings_and_their_names_are_tied_together(tmp_path):
    from styleid_guidance.files.embeddings import read_embeddings, write_embeddings

    out = tmp_path / "e.npy"
    write_embeddings(out, torch.eye(3), ["a.png", "b.png", "c.png"], model="m")
    emb, names = read_embeddings(out)
    assert names == ["a.png", "b.png", "c.png"] and torch.equal(emb, torch.eye(3))
    newer = tmp_path / "newer.npy"
    write_embeddings(newer, torch.ones(2, 3), ["x", "y"])
    out.write_bytes(newer.read_bytes())  # what a kill between the two renames leaves: new array, old names
    with pytest.raises(StyleIDError, match="from different runs"):
        read_embeddings(out)


def test_a_damaged_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys):
    from styleid_guidance.tiny.smoke_data import make_smoke_dataset
    from styleid_guidance.train.runs.checkpoint import list_checkpoints

    data = make_smoke_dataset(tmp_path / "d", train_ids=6, eval_ids=2, levels=(3,), size=48)
    args = ["train", "--data", str(data["train"]), "--output", str(tmp_path / "run"), "--backbone", "test-tiny",
            "--ids-per-batch", "2", "--num-workers", "0", "--save-every", "1", "--keep-last", "3", "--no-progress",
            "--log-every", "1"]
    assert run([*args, "--max-steps", "2"]) == 0
    (step2,) = [d for s, d in list_checkpoints(tmp_path / "run") if s == 2]
    (step2 / "optimizer.pt").write_bytes(b"damaged")
    capsys.readouterr()
    assert run([*args, "--max-steps", "3"]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "step-00000002: damaged" in line]
    assert len(warned) == 1 and warned[0].startswith("styleid train: ") and "step-00000001" in warned[0], warned
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r][-2:] == [2, 3]  # step 2 re-trained from step 1


# ---------------------------------------------------------------------- decompression bombs
def _png_header(w: int, h: int) -> bytes:
    """A PNG whose header claims w x h pixels (PIL refuses it from the header, before decoding)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [20000, 10000])  # PIL errors above 2x its limit and only warns between
def test_a_decompression_bomb_is_one_line_everywhere(side, model_dir, photos, capsys):
    bomb = photos / "bomb.png"
    bomb.write_bytes(_png_header(side, side))
    commands = [
        ["verify", "--model", str(model_dir), "--crop", "center", str(photos / "a.png"), str(bomb)],
        ["jojogan", "train", str(bomb), "-o", str(photos / "s.pt"), *FAST_TINY],
        ["jojogan", "stylize", str(bomb), "--style-ckpt", str(photos / "none.pt"), "--tiny", "-o", str(photos / "st")],
    ]
    for argv in commands:
        assert run(argv) == 2
        line = _one_line(capsys)
        assert ("megapixels, over the 89 MP safety limit" in line and "bomb.png" in line) or "none.pt" in line, line
    out = photos / "e.safetensors"  # --skip-bad drops the bomb, keeps the rest
    assert run(["embed", "--model", str(model_dir), "--crop", "center", "--skip-bad", str(photos), "-o", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "skipped 1" in err and "megapixels" in err
    from styleid_guidance.files.embeddings import read_embeddings

    assert sorted(read_embeddings(out)[1]) == ["a.png", "b.png"]
