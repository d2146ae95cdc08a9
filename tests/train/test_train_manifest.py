"""The trainer reads strength levels from `styleid generate`'s manifest.jsonl; the path rules are the fallback."""
from __future__ import annotations

import json
import logging
import shutil

import pytest

from styleid_guidance.cli import run
from styleid_guidance.perception.manifest import MANIFEST
from styleid_guidance.train.data import IdentityDataset, scan_stylebench

from test_generate import FAST, make_faces


@pytest.fixture(scope="module")
def generated(tmp_path_factory, astronaut):
    root = tmp_path_factory.mktemp("gen")
    faces = make_faces(root / "faces", astronaut)
    out = root / "data"
    assert run(["generate", str(faces), "-o", str(out), *FAST]) == 0
    return out


def _relabel(root, path: str, level: int) -> None:
    """Say in the manifest that `path` has `level` (which its file name does not): only the manifest knows it."""
    records = [json.loads(line) for line in (root / MANIFEST).read_text().splitlines()]
    for r in records:
        if r["path"] == path:
            r["level"] = level
    (root / MANIFEST).write_text("".join(json.dumps(r) + "\n" for r in records))


def test_levels_come_from_the_manifest(generated, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(generated, data)
    _relabel(data, "infiniteyou/pixar/ann_2.png", 6)
    samples = {s.path.relative_to(data).as_posix(): s for s in IdentityDataset(data).samples}
    records = {json.loads(line)["path"]: json.loads(line) for line in (data / MANIFEST).read_text().splitlines()}
    assert set(samples) == set(records)
    for path, sample in samples.items():
        assert sample.level == records[path].get("level")
        assert (sample.method, sample.style) == (records[path].get("method"), records[path].get("style"))
    assert samples["infiniteyou/pixar/ann_2.png"].level == 6  # the manifest beats the {idx} rule
    assert samples["p3/ann.png"].level is None and samples["p3/ann.png"].is_source


def test_path_rules_are_the_fallback(generated, tmp_path, caplog):
    data = tmp_path / "data"
    shutil.copytree(generated, data)
    _relabel(data, "infiniteyou/pixar/ann_2.png", 6)
    extra = data / "infiniteyou/pixar/ann_7.png"  # not in the manifest (added by hand)
    shutil.copy(data / "infiniteyou/pixar/ann_5.png", extra)
    with caplog.at_level(logging.WARNING, logger="styleid.train"):
        levels = {s.path.name: s.level for s in scan_stylebench(data) if s.method == "infiniteyou" and s.style == "pixar"}
    assert levels["ann_7.png"] == 7 and levels["ann_2.png"] == 6  # idx (stylebench.json) for the unlisted one only
    assert "1 stylised image(s)" in caplog.text and "not in its manifest.jsonl" in caplog.text
    (data / MANIFEST).unlink()
    assert {s.path.name: s.level for s in scan_stylebench(data) if s.style == "pixar"}["ann_2.png"] == 2  # idx_is_level
    (data / "stylebench.json").unlink()
    assert all(s.level is None for s in scan_stylebench(data))  # nothing says: unknown


def test_a_generated_dataset_trains(generated, tmp_path):
    out = tmp_path / "run"
    assert run(["train", "--data", str(generated), "--output", str(out), "--backbone", "test-tiny", "--max-steps", "2",
                "--save-every", "2", "--ids-per-batch", "2", "--images-per-id", "2", "--num-workers", "0",
                "--no-progress", "--log-every", "1"]) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    assert [r["step"] for r in records] == [1, 2]
    assert (out / "final" / "adapter_model.safetensors").is_file()
