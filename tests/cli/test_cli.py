"""The `styleid` command: verify, embed, and one-line errors with exit code 2."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from styleid_guidance.cli import main


@pytest.fixture
def tiny_model_dir(tmp_path, tiny_encoder):
    return tiny_encoder.save_pretrained(tmp_path / "tiny-model")


@pytest.fixture
def faces(tmp_path, astronaut, camera):
    folder = tmp_path / "faces"
    (folder / "sub").mkdir(parents=True)
    astronaut.save(folder / "astronaut.png")
    astronaut.convert("L").save(folder / "sub" / "astronaut_gray.jpg")
    camera.save(folder / "camera.png")
    return folder


def _run(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


def test_verify_prints_similarity_and_verdict(tiny_model_dir, faces, capsys):
    code, out, _ = _run(["verify", "--model", str(tiny_model_dir), "--crop", "center", str(faces / "astronaut.png"), str(faces / "sub" / "astronaut_gray.jpg")], capsys)
    assert code == 0
    sim = float(out.split(":")[1].split()[0])
    assert -1.0 <= sim <= 1.0 and ("same" in out) == (sim >= 0.4)
    code, out, _ = _run(["verify", "--model", str(tiny_model_dir), "--threshold", "1.01", "--crop", "face", "--detector", "mtcnn",
                         str(faces / "astronaut.png"), str(faces / "astronaut.png"), str(faces / "camera.png")], capsys)
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == 2 and all("different" in line for line in lines)
    assert float(lines[0].split(": ")[1].split()[0]) == pytest.approx(1.0, abs=1e-4)


def test_embed_writes_npy_and_safetensors(tiny_model_dir, faces, tmp_path, capsys):
    npy = tmp_path / "emb.npy"
    code, out, err = _run(["embed", "--model", str(tiny_model_dir), "--crop", "center", str(faces), "--output", str(npy)], capsys)
    assert code == 0 and "styleid embed: wrote 3 embeddings" in err and out == ""  # a log line, not a result
    emb = np.load(npy)
    header, *names = npy.with_suffix(".files.txt").read_text().splitlines()
    assert header.startswith("# sha256=")  # ties the names to this very array (see files/embeddings.py)
    assert emb.shape == (3, 32) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    assert names == ["astronaut.png", "camera.png", "sub/astronaut_gray.jpg"]
    st = tmp_path / "emb.safetensors"
    assert _run(["embed", "--model", str(tiny_model_dir), "--crop", "center", str(faces), "--output", str(st)], capsys)[0] == 0
    np.testing.assert_allclose(load_file(str(st))["embeddings"].numpy(), emb, atol=1e-6)


def test_embed_stops_on_a_corrupt_file_unless_told_to_skip(tiny_model_dir, faces, tmp_path, capsys):
    (faces / "broken.png").write_bytes(b"not an image")
    out_file = tmp_path / "e.npy"
    code, _, err = _run(["embed", "--model", str(tiny_model_dir), "--crop", "center", str(faces), "--output", str(out_file)], capsys)
    assert code == 2 and "broken.png" in err and not out_file.exists()
    code, out, err = _run(["embed", "--model", str(tiny_model_dir), "--crop", "center", "--skip-bad", str(faces), "--output", str(out_file)], capsys)
    assert code == 0 and np.load(out_file).shape == (3, 32) and "skipped 1" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["verify", "--model", "{model}", "{faces}/missing.png", "{faces}/camera.png"], "missing.png: no such file"),
        (["verify", "--model", "{tmp}/no-model-here", "{faces}/astronaut.png", "{faces}/camera.png"], "no such folder"),
        (["verify", "--model", "{model}", "--crop", "face", "--detector", "mtcnn", "{faces}/blank.png", "{faces}/camera.png"], "no face found; use --crop center"),
        (["verify", "--model", "{model}", "--device", "gpu9", "{faces}/astronaut.png", "{faces}/camera.png"], "--device"),
        (["embed", "--model", "{model}", "{faces}", "--output", "{tmp}/x.csv"], "use a .npy or .safetensors"),
        (["verify", "--model", "kwanY/styleid", "{faces}/astronaut.png", "{faces}/camera.png"], "--model: the StyleID encoder weights 'kwanY/styleid' are not available"),
    ],
)
def test_user_mistakes_are_one_line_errors(args, message, tiny_model_dir, faces, tmp_path, capsys):
    from PIL import Image

    Image.new("RGB", (128, 128), (200, 200, 200)).save(faces / "blank.png")
    argv = [a.format(model=tiny_model_dir, faces=faces, tmp=tmp_path) for a in args]
    code, _, err = _run(argv, capsys)
    assert code == 2
    assert err.startswith(f"styleid {argv[0]}: error: ") and message in err and err.count("\n") == 1 and "Traceback" not in err


def test_checkpoint_with_missing_or_unexpected_keys(tiny_model_dir, faces, capsys):
    weights = tiny_model_dir / "backbone.safetensors"
    state = load_file(str(weights))
    key = sorted(state)[0]
    missing = {k: v for k, v in state.items() if k != key}
    save_file(missing, str(weights))
    code, _, err = _run(["verify", "--model", str(tiny_model_dir), str(faces / "astronaut.png"), str(faces / "camera.png")], capsys)
    assert code == 2 and "missing 1 weights" in err and key in err
    save_file({**state, "extra.weight": torch.zeros(1)}, str(weights))
    code, _, err = _run(["verify", "--model", str(tiny_model_dir), str(faces / "astronaut.png"), str(faces / "camera.png")], capsys)
    assert code == 2 and "unexpected" in err and "extra.weight" in err


def test_errors_from_a_real_process(tmp_path, faces):
    proc = subprocess.run([sys.executable, "-m", "styleid_guidance", "verify"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "usage:" in proc.stderr and "Traceback" not in proc.stderr
    cfg = tmp_path / "m"
    cfg.mkdir()
    (cfg / "config.json").write_text(json.dumps({"model_type": "bert"}))
    proc = subprocess.run([sys.executable, "-m", "styleid_guidance", "verify", "--model", str(cfg), str(faces / "astronaut.png"), str(faces / "camera.png")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "model_type 'bert' is not a CLIP model" in proc.stderr and "Traceback" not in proc.stderr
