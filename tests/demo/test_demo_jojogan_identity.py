"""examples/jojogan_identity.py: a labelled grid under outputs/ by default, the JoJoGAN flags, early errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from examples import jojogan_identity as example
from examples.common import CAPTION_HEIGHT
from support import REPO

ROOT = REPO


def test_default_output_is_under_the_git_ignored_outputs_folder():
    args = example.build_parser().parse_args([])
    assert args.output == "outputs/jojogan_identity.png" and "/outputs/" in (ROOT / ".gitignore").read_text().split()
    assert Path(args.style).name == "astronaut_painted.jpg" and Path(args.face).name == "astronaut.jpg"
    # JoJoGAN's spellings, as `styleid jojogan train`
    for flag in ("--max-steps", "--num-iter", "--num_iter"):
        assert example.build_parser().parse_args([flag, "7"]).max_steps == 7
    assert example.build_parser().parse_args(["-o", "x.png", "--id_weight", "2"]).id_weight == 2.0


def test_tiny_run_writes_a_labelled_grid(tmp_path, capsys):
    out = tmp_path / "nested" / "grid.png"
    assert example.main(["--tiny", "--max-steps", "1", "--output", str(out)]) == 0
    grid = Image.open(out)
    # title, then style | aligned face | none | ArcFace | StyleID, each 256 px with a caption underneath
    assert grid.size == (5 * 256, CAPTION_HEIGHT + 256 + CAPTION_HEIGHT)
    caption_row = grid.crop((0, CAPTION_HEIGHT + 256, grid.width, grid.height)).convert("L")
    for i in range(5):  # every panel has a label (dark pixels in its caption strip)
        assert np.asarray(caption_row.crop((i * 256, 0, (i + 1) * 256, CAPTION_HEIGHT))).min() < 100
    printed = capsys.readouterr().out
    assert "style reference | aligned face | no identity loss | ArcFace identity loss | StyleID identity loss" in printed
    assert not list(ROOT.glob("jojogan_identity*.png"))  # nothing in the repository root


@pytest.mark.parametrize("argv, message", [
    (["--output", "grid.jpg"], "path ending in .png"),
    (["--max-steps", "0"], "--max-steps must be ≥ 1"),
    (["--output", "{tmp}/dir.png"], "is a folder"),
    (["--output", "{tmp}/notes.png/grid.png"], "cannot write in"),  # a file where the folder should be
    (["{tmp}/notes.png"], "notes.png: not a readable image"),
    (["--stylegan-ckpt", "{tmp}/missing.pt", "--output", "{tmp}/g.png"], "--stylegan-ckpt"),
])
def test_mistakes_are_one_line_before_any_training(tmp_path, capsys, argv, message):
    (tmp_path / "notes.png").write_text("not an image")
    (tmp_path / "dir.png").mkdir()
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert example.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("jojogan_identity: error: ") and message in err and "Traceback" not in err, err
    assert err.count("\n") == 1

