"""`styleid generate` in one process: layout, manifest, seeds, subset regeneration, calibration, pairs, bad input."""
from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from styleid_guidance.cli import run
from styleid_guidance.errors import StyleIDError
from styleid_guidance.eval.pairs import read_pairs
from styleid_guidance.perception.layout import item_seed, parse_styles, read_calibration
from styleid_guidance.perception.manifest import MANIFEST, PARTS_DIR, read_records, reconcile

# 2 identities × 1 method × 2 styles × 2 levels = 8 images, 2 denoising steps: seconds on a CPU
FAST = ["--tiny", "--methods", "infiniteyou", "--styles", "pixar", "orc", "--levels", "2,5", "--steps", "2", "--no-progress"]


def make_faces(folder: Path, astronaut: Image.Image, extra: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    small = astronaut.resize((192, 192))
    small.save(folder / "ann.png")
    ImageOps.mirror(small).rotate(8).save(folder / "bob.jpg", quality=95)
    if extra:
        Image.new("RGB", (96, 96), (120, 160, 90)).save(folder / "nobody.png")  # no face in it
        (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return folder


def images(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.png"))}


@pytest.fixture(scope="module")
def faces(tmp_path_factory, astronaut):
    return make_faces(tmp_path_factory.mktemp("faces"), astronaut)


@pytest.fixture(scope="module")
def full(tmp_path_factory, faces):
    out = tmp_path_factory.mktemp("gen") / "out"
    assert run(["generate", str(faces), "-o", str(out), *FAST, "--pairs", str(out / "pairs.csv")]) == 0
    return out


def test_layout_manifest_and_seeds(full):
    files = images(full)
    stylized = sorted(p for p in files if not p.startswith("p3/"))
    assert sorted(p for p in files if p.startswith("p3/")) == ["p3/ann.png", "p3/bob.png"]  # the .jpg re-encoded as PNG
    assert stylized == sorted(f"infiniteyou/{s}/{i}_{lv}.png" for s in ("orc", "pixar") for i in ("ann", "bob") for lv in (2, 5))
    lines = (full / MANIFEST).read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["path"] for r in records] == sorted(files)  # one record per image, sorted, nothing else
    assert not (full / PARTS_DIR).exists() or not list((full / PARTS_DIR).iterdir())  # parts merged away
    for r in records:
        assert r["bytes"] == len(files[r["path"]])
        if r["kind"] == "source":
            continue
        assert (r["method"], r["level"], r["source"]) == ("infiniteyou", int(r["path"][-5]), f"p3/{r['id']}.png")
        assert r["seed"] == item_seed(0, r["id"], r["method"], r["style"], r["level"])
        assert r["prompt"] == parse_styles([r["style"]])[r["style"]]
        assert r["params"]["num_inference_steps"] == 2 and r["overrides"] == {"num_inference_steps": 2}
        assert r["params"]["infusenet_conditioning_scale"] == pytest.approx(1.1 - 0.15 * r["level"])  # the paper's schedule
        assert r["models"]["class"] == "InfiniteYouStylizer" and r["dtype"] == "float32"
        with Image.open(full / r["path"]) as im:
            assert im.size == (r["params"]["width"], r["params"]["height"]) == (32, 32)
    assert json.loads((full / "stylebench.json").read_text())["idx_is_level"] is True
    # distinct images: seeds and levels differ
    assert len({files[p] for p in stylized}) == len(stylized)


def test_item_seed_is_a_stable_hash():
    assert item_seed(0, "ann", "ip_adapter", "pixar", 3) == item_seed(0, "ann", "ip_adapter", "pixar", 3)
    # the top 53 bits of sha256 over the canonical JSON key: the same on every machine, process and release
    key = json.dumps([0, "ann", "ip_adapter", "pixar", 3], separators=(",", ":")).encode()
    assert item_seed(0, "ann", "ip_adapter", "pixar", 3) == int.from_bytes(hashlib.sha256(key).digest()[:8], "big") >> 11
    assert item_seed(0, "ann", "ip_adapter", "pixar", 3) == 2425872632024146
    others = {item_seed(*k) for k in [(1, "ann", "ip_adapter", "pixar", 3), (0, "bob", "ip_adapter", "pixar", 3),
                                      (0, "ann", "instantid", "pixar", 3), (0, "ann", "ip_adapter", "orc", 3),
                                      (0, "ann", "ip_adapter", "pixar", 4)]}
    assert len(others) == 5 and all(0 <= s < 2**53 for s in others)


def test_regenerating_a_subset_gives_the_same_bytes(full, tmp_path, faces):
    out = tmp_path / "out"
    shutil.copytree(full, out)
    reference, manifest = images(full), (full / MANIFEST).read_text()
    gone = ["infiniteyou/orc/bob_5.png", "infiniteyou/pixar/ann_2.png", "p3/bob.png"]
    for rel in gone:
        (out / rel).unlink()
    (out / "infiniteyou/pixar/ann_5.png").write_bytes(b"truncated")  # damaged: size no longer matches its record
    assert run(["generate", str(faces), "-o", str(out), *FAST]) == 0
    assert images(out) == reference
    assert (out / MANIFEST).read_text() == manifest


def test_rerun_skips_finished_images_and_refuses_other_settings(full, tmp_path, faces, capsys):
    out = tmp_path / "out"
    shutil.copytree(full, out)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    assert run(["generate", str(faces), "-o", str(out), *FAST]) == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == stamps  # nothing rewritten
    assert "0 new record(s)" in capsys.readouterr().err
    assert run(["generate", str(faces), "-o", str(out), *FAST[:-3], "--steps", "3", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "made earlier with other settings (overrides differ" in err[0], err
    assert "use another output folder" in err[0]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == stamps


def test_pairs_are_balanced_and_match_cells(full):
    pairs = read_pairs(full / "pairs.csv")  # the format `styleid eval` reads: paths exist relative to the CSV
    assert len(pairs) == 16  # 8 stylised images × (same, different)
    assert sum(p.label for p in pairs) == 8
    with open(full / "pairs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["source", "stylized", "label", "split", "method", "style", "strength"]
    for row in rows:
        src_id = Path(row["source"]).stem
        sty_id, level = Path(row["stylized"]).stem.rsplit("_", 1)
        assert (src_id == sty_id) == (row["label"] == "1")  # different = another identity
        assert row["stylized"].startswith(f"{row['method']}/{row['style']}/") and level == row["strength"]  # same cell


def test_calibration_picks_the_levels_kept(tmp_path, faces):
    calib = tmp_path / "psychometric.json"
    cells = [{"method": "infiniteyou", "style": "pixar", "threshold": 3.4, "threshold_ci": [2.9, 4.0], "levels_kept": [1, 3],
              "observed": {"1": 1.0, "3": 0.93, "5": 0.7}, "n": 120},
             {"method": "infiniteyou", "style": "orc", "threshold": None, "threshold_ci": [None, None], "levels_kept": [],
              "observed": {}, "n": 0}]
    calib.write_text(json.dumps({"target": 0.9, "cells": cells}))
    out = tmp_path / "out"
    assert run(["generate", str(faces), "-o", str(out), "--tiny", "--calibration", str(calib), "--steps", "1", "--no-progress"]) == 0
    made = sorted(p for p in images(out) if not p.startswith("p3/"))
    assert made == ["infiniteyou/pixar/ann_1.png", "infiniteyou/pixar/ann_3.png", "infiniteyou/pixar/bob_1.png", "infiniteyou/pixar/bob_3.png"]


def test_a_calibration_that_keeps_nothing_names_its_flag(tmp_path, faces, capsys):
    calib = tmp_path / "psychometric.json"
    cells = [{"method": "infiniteyou", "style": "orc", "threshold": None, "levels_kept": [], "n": 0}]
    calib.write_text(json.dumps({"target": 0.9, "cells": cells}))
    out = tmp_path / "out"
    assert run(["generate", str(faces), "-o", str(out), "--tiny", "--calibration", str(calib), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"styleid generate: error: nothing to generate: --calibration {calib} keeps no level for the chosen methods and styles"]
    assert not out.exists()


@pytest.mark.parametrize("content, message", [
    ("{not json", "not a readable JSON file"),
    ('[1, 2]', "expected {\"target\""),
    ('{"target": 0.9, "cells": []}', "no cells"),
    ('{"target": 2, "cells": [{"method": "instantid", "style": "orc", "levels_kept": [1]}]}', "target must be"),
    ('{"target": 0.9, "cells": [{"method": "instantid", "style": "orc"}]}', "cells[0]: missing levels_kept"),
    ('{"target": 0.9, "cells": [{"method": "dalle", "style": "orc", "levels_kept": [1]}]}', "unknown method 'dalle'"),
    ('{"target": 0.9, "cells": [{"method": "instantid", "style": "../x", "levels_kept": [1]}]}', "folder-safe name"),
    ('{"target": 0.9, "cells": [{"method": "instantid", "style": "orc", "levels_kept": [0, 8]}]}', "integer levels 1..7"),
    ('{"target": 0.9, "cells": [{"method": "instantid", "style": "orc", "levels_kept": [2.5]}]}', "integer levels 1..7"),
    ('{"target": 0.9, "cells": [{"method": "instantid", "style": "orc", "levels_kept": [1], "threshold": "high"}]}', "threshold must be"),
    ('{"target": 0.9, "cells": [{"method": "instantid", "style": "orc", "levels_kept": [1]},'
     ' {"method": "instantid", "style": "orc", "levels_kept": [2]}]}', "a second cell"),
])
def test_bad_calibration_files(tmp_path, content, message):
    path = tmp_path / "psychometric.json"
    path.write_text(content)
    with pytest.raises(StyleIDError, match=__import__("re").escape(message)):
        read_calibration(path)


@pytest.mark.parametrize("argv, message", [
    (["--methods", "dalle"], "--methods: unknown method(s) dalle"),
    (["--styles", "vaporwave"], "style 'vaporwave' is not one of the paper's"),
    (["--styles", "a/b=Portrait"], "must be letters, digits"),
    (["--calibration", "missing.json"], "--calibration"),
    (["--levels", "0,3"], "argument --levels"),
    (["--levels", "2", "--calibration", "c.json"], "not allowed with argument"),
    (["--steps", "0"], "argument --steps"),
])
def test_bad_arguments_are_one_line(tmp_path, faces, capsys, argv, message):
    out = tmp_path / "out"
    code = run(["generate", str(faces), "-o", str(out), "--tiny", "--no-progress", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and message in err[-1], err
    assert not out.exists()  # nothing written, no model loaded


def test_bad_paths_fail_before_any_model_loads(tmp_path, faces, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for argv, message in ([str(faces), "-o", str(blocker)], "is a file"), ([str(tmp_path / "none"), "-o", str(tmp_path / "o")], "no such file"), \
            ([str(faces), "-o", str(tmp_path / "o2"), "--pairs", str(blocker / "p.csv")], "--pairs"):
        assert run(["generate", *argv, *FAST]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    dup = tmp_path / "dup"
    dup.mkdir()
    (dup / "ann.jpg").write_bytes((faces / "bob.jpg").read_bytes())
    assert run(["generate", str(faces), str(dup), "-o", str(tmp_path / "o3"), *FAST]) == 2
    assert "id 'ann' is also" in capsys.readouterr().err


def test_faces_that_cannot_be_used_are_reported_and_skipped(tmp_path, astronaut, capsys):
    faces = make_faces(tmp_path / "faces", astronaut, extra=True)
    out = tmp_path / "out"
    assert run(["generate", str(faces), "-o", str(out), *FAST[:-5], "--styles", "pixar", "--levels", "4", "--steps", "1", "--no-progress"]) == 0
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert any(line.endswith("nobody.png: no face found") for line in lines)
    assert any("broken.png: not a readable image" in line for line in lines)
    assert "skipped 2 source photo(s)" in captured.err
    assert sorted(images(out)) == ["infiniteyou/pixar/ann_4.png", "infiniteyou/pixar/bob_4.png", "p3/ann.png", "p3/bob.png"]


def test_reconcile_drops_missing_files_and_torn_lines(full, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(full, out)
    (out / "infiniteyou/orc/ann_2.png").unlink()
    parts = out / PARTS_DIR
    parts.mkdir(exist_ok=True)
    extra = json.loads((out / MANIFEST).read_text().splitlines()[-1])
    (parts / "host-1.jsonl").write_text(json.dumps(extra) + "\n" + '{"path": "infiniteyou/orc/bo')  # killed mid-line
    records = reconcile(out)
    assert "infiniteyou/orc/ann_2.png" not in records and len(records) == len(images(full)) - 1
    assert not list(parts.glob("*.jsonl"))  # merged
    assert read_records(out) == records
    (out / MANIFEST).write_text((out / MANIFEST).read_text() + "garbage\n")
    with pytest.raises(StyleIDError, match=r"manifest.jsonl:\d+: not a manifest record"):
        read_records(out)


def test_a_detector_that_cannot_run_stops_the_run_instead_of_skipping_every_photo(tmp_path, faces, capsys):
    empty = tmp_path / "weights"
    empty.mkdir()
    out = tmp_path / "out"
    assert run(["generate", str(faces), "-o", str(out), *FAST, "--detector", "retinaface", "--model-rootpath", str(empty)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "RetinaFace weights not found" in err[-1] and not any("skipped" in line for line in err), err
    assert not list(out.rglob("*.png"))
