"""Training data: StyleBench-S / identity-folder parsing, bad-input handling, transform, smoke data."""
from __future__ import annotations

import csv
import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from styleid_guidance.errors import StyleIDError
from styleid_guidance.encoder.preprocess import clip_preprocess
from styleid_guidance.train.data import IdentityDataset, TrainTransform, collate
from styleid_guidance.cli import run
from styleid_guidance.tiny.smoke_data import make_smoke_dataset


def _img(path, value=128, size=40):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)


def _stylebench(root, idx_is_level=False):
    for ident in ("001", "002", "003"):
        _img(root / "p3" / f"{ident}.png", int(ident))
        _img(root / "ipa" / "orc" / f"{ident}_3.png", int(ident) + 10)
        _img(root / "instantid" / "anime" / "level5" / f"{ident}_0.png", int(ident) + 20)
    if idx_is_level:
        (root / "stylebench.json").write_text(json.dumps({"idx_is_level": True}))


def test_stylebench_layout_metadata(tmp_path):
    _stylebench(tmp_path, idx_is_level=True)
    ds = IdentityDataset(tmp_path, TrainTransform(32))
    assert ds.layout == "stylebench"
    assert ds.identities == ["001", "002", "003"] and ds.num_classes == 3
    assert len(ds) == 9
    by_path = {s.path.relative_to(tmp_path).as_posix(): s for s in ds.samples}
    src = by_path["p3/002.png"]
    assert src.is_source and src.identity == "002" and src.level is None
    ipa = by_path["ipa/orc/002_3.png"]
    assert (ipa.method, ipa.style, ipa.level, ipa.identity) == ("ipa", "orc", 3, "002")  # idx is the level
    lvl = by_path["instantid/anime/level5/002_0.png"]
    assert (lvl.method, lvl.style, lvl.level) == ("instantid", "anime", 5)  # level folder wins over idx
    # labels index identities consistently
    assert all(ds.identities[ds.labels[i]] == s.identity for i, s in enumerate(ds.samples))


def test_idx_is_not_a_level_without_the_manifest(tmp_path):
    _stylebench(tmp_path, idx_is_level=False)
    ds = IdentityDataset(tmp_path, TrainTransform(32))
    levels = {s.path.name: s.level for s in ds.samples if s.method == "ipa"}
    assert set(levels.values()) == {None}


def test_identity_folders_corrupt_and_small_identities(tmp_path, caplog):
    for ident, n in (("alice", 3), ("bob", 2), ("carol", 1)):
        for k in range(n):
            _img(tmp_path / ident / f"{k}.png", k)
    (tmp_path / "alice" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (tmp_path / "bob" / "empty.jpg").write_bytes(b"")
    (tmp_path / "bob" / "notes.txt").write_text("not an image")
    with caplog.at_level(logging.WARNING, logger="styleid.train"):
        ds = IdentityDataset(tmp_path, TrainTransform(32))
    assert ds.layout == "folders"
    assert ds.num_skipped == 2
    assert ds.identities == ["alice", "bob"] and ds.dropped_identities == ["carol"]
    assert len(ds) == 5
    text = caplog.text
    assert "skipped 2 unreadable image(s)" in text
    assert "dropped 1 identity with fewer than 2 images" in text and "carol" in text


def test_image_that_fails_late_is_replaced_by_a_sibling(tmp_path, caplog):
    for k in range(2):
        _img(tmp_path / "a" / f"{k}.png", k)
        _img(tmp_path / "b" / f"{k}.png", k + 5)
    ds = IdentityDataset(tmp_path, TrainTransform(32, augment=False))
    victim = next(i for i, s in enumerate(ds.samples) if s.path.name == "0.png" and s.identity == "a")
    ds.samples[victim].path.write_bytes(b"garbage after the start-up check")
    with caplog.at_level(logging.WARNING, logger="styleid.train"):
        x, label = ds[(victim, 0)]
    assert label == ds.labels[victim] and x.shape == (3, 32, 32)
    assert "could not decode" in caplog.text


@pytest.mark.parametrize("make", ["missing", "empty", "singletons"])
def test_empty_dataset_is_a_clear_error(tmp_path, make):
    root = tmp_path / "data"
    if make != "missing":
        root.mkdir()
    if make == "singletons":
        _img(root / "x" / "0.png")
        _img(root / "y" / "0.png")
    with pytest.raises(StyleIDError, match="no such folder" if make == "missing" else "no usable training images"):
        IdentityDataset(root, TrainTransform(32))


def test_transform_is_seeded_and_matches_inference_without_augmentation(tmp_path):
    x = torch.rand(3, 50, 70)
    t = TrainTransform(32, augment=True)
    a, b, c = t(x, 1), t(x, 1), t(x, 2)
    assert a.shape == (3, 32, 32)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    plain = TrainTransform(32, augment=False)(x, 5)
    assert torch.allclose(plain, clip_preprocess(x[None], 32)[0])
    pixels, labels = collate([(a, 3), (c, 4)])
    assert pixels.shape == (2, 3, 32, 32) and labels.tolist() == [3, 4] and labels.dtype == torch.long


def test_smoke_dataset_layout_and_pairs(tmp_path):
    paths = make_smoke_dataset(tmp_path, train_ids=4, eval_ids=3, levels=(2, 6), size=48)
    train = IdentityDataset(paths["train"], TrainTransform(32))
    held = IdentityDataset(paths["eval"], TrainTransform(32))
    assert len(train.identities) == 4 and len(held.identities) == 3
    assert not set(train.identities) & set(held.identities), "held-out identities must not be trained on"
    # 1 source + 2 methods × 3 styles × 2 levels per training identity; strength readable from the path
    assert len(train) == 4 * (1 + 2 * 3 * 2)
    assert {s.level for s in train.samples if not s.is_source} == {2, 6}
    with open(paths["pairs"]) as f:
        rows = list(csv.DictReader(f))
    assert set(rows[0]) == {"source", "stylized", "label", "split", "method", "style", "strength"}
    labels = [int(r["label"]) for r in rows]
    assert sum(labels) * 2 == len(labels)  # balanced
    assert {r["split"] for r in rows} == {"cross-id", "cross-style", "cross-method"}
    for r in rows:
        assert (tmp_path / r["source"]).is_file() and (tmp_path / r["stylized"]).is_file()
        src_id = r["source"].split("/")[-1].split(".")[0]
        sty_id, level = r["stylized"].split("/")[-1].split(".")[0].split("_")
        assert (src_id == sty_id) == (r["label"] == "1") and level == r["strength"]
    # stylisation strength changes the image more at higher levels
    src = np.asarray(Image.open(paths["train"] / "p3" / "00000.png"), dtype=np.float32)
    low = np.asarray(Image.open(paths["train"] / "toon" / "orc" / "00000_2.png"), dtype=np.float32)
    high = np.asarray(Image.open(paths["train"] / "toon" / "orc" / "00000_6.png"), dtype=np.float32)
    assert np.abs(high - src).mean() > np.abs(low - src).mean()


def test_smoke_data_cli(tmp_path, capsys):
    assert run(["smoke-data", str(tmp_path / "s"), "--train-ids", "2", "--eval-ids", "2", "--levels", "4", "--image-size", "32"]) == 0
    assert (tmp_path / "s" / "pairs.csv").is_file()
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("styleid smoke-data: wrote ") and "pairs.csv" in err
    assert run(["smoke-data", str(tmp_path / "t"), "--levels", "0,9"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--levels" in err[0] and "1 to 7" in err[0]
