"""`styleid eval` and user mistakes: CSV encodings, paths, sizes, offline weights, and outputs as a set."""
from __future__ import annotations

import csv
import json
import os
import time

import pytest

from styleid_guidance.cli import run
from styleid_guidance.errors import StyleIDError
from styleid_guidance.eval import evaluate, read_pairs
from styleid_guidance.tiny.smoke_data import make_smoke_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    paths = make_smoke_dataset(root / "data", train_ids=2, eval_ids=2, levels=(2, 5), size=40)
    rows = list(csv.DictReader(open(paths["pairs"])))[:24]
    paths["rows"] = rows
    paths["csv_text"] = "source,stylized,label,split,method,style,strength\n" + "".join(
        f"{r['source']},{r['stylized']},{r['label']},{r['split']},{r['method']},{r['style']},{r['strength']}\n" for r in rows)
    paths["full"] = root / "data" / "full.csv"
    paths["full"].write_text(paths["csv_text"])
    paths["minimal"] = root / "data" / "minimal.csv"
    paths["minimal"].write_text("source,stylized,label\n" + "".join(f"{r['source']},{r['stylized']},{r['label']}\n" for r in rows))
    return paths


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_utf8_bom_is_accepted(data):
    bom = data["full"].with_name("bom.csv")
    bom.write_bytes(b"\xef\xbb\xbf" + data["csv_text"].encode())
    assert read_pairs(bom) == read_pairs(data["full"])


def test_unreadable_pairs_files_are_one_line_errors(tmp_path, data, capsys):
    latin = data["full"].with_name("latin1.csv")
    latin.write_bytes(data["csv_text"].replace("stylebench-h/p3", "stylebench-h/p3é", 1).encode("latin-1"))
    folder = data["full"].parent
    for pairs, message in ((latin, "not UTF-8 text"), (folder, "is a folder"), (tmp_path / "missing.csv", "no such file")):
        with pytest.raises(StyleIDError, match=message):
            read_pairs(pairs)
        assert run(["eval", "--model", "test-tiny", "--pairs", str(pairs), "-o", str(tmp_path / "o")]) == 2
        line = _one_line(capsys)
        assert line.startswith(f"styleid eval: error: --pairs: {pairs}: ") and message in line


@pytest.mark.parametrize("value", ["0", "-4"])
def test_batch_size_must_be_positive(tmp_path, data, value, capsys):
    assert run(["eval", "--model", "test-tiny", "--pairs", str(data["full"]), "-o", str(tmp_path / "o"), "--batch-size", value]) == 2
    assert "--batch-size: must be ≥ 1" in _one_line(capsys)


def test_outputs_are_one_set_and_the_cache_survives(tmp_path, data, monkeypatch):
    out = tmp_path / "out"
    first = evaluate("test-tiny", data["full"], out, crop="center", progress=False)
    assert (out / "similarity_vs_strength.png").is_file() and (out / "embedding_cache").is_dir()
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    # a run killed while writing its report leaves the previous set untouched and no temp folder
    import styleid_guidance.eval.api as api

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "plot_similarity_vs_strength", killed)
    with pytest.raises(KeyboardInterrupt):
        evaluate("test-tiny", data["minimal"], out, crop="center", progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    monkeypatch.undo()

    # a run without a strength column drops the stale plot, keeps the cache (nothing re-embedded)
    second = evaluate("test-tiny", data["minimal"], out, crop="center", progress=False)
    assert second.computed == {"styleid": 0} and first.computed["styleid"] > 0
    assert not (out / "similarity_vs_strength.png").exists()
    assert sorted(p.name for p in out.iterdir()) == ["embedding_cache", "metrics.json", "roc.png", "roc_log.png",
                                                      "scores.csv", "table.md"]
    assert set(json.loads((out / "metrics.json").read_text())["styleid"]) == {"overall"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_output_folder_problems_fail_before_the_work(tmp_path, data, capsys):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    start = time.perf_counter()
    assert run(["eval", "--model", "test-tiny", "--pairs", str(data["full"]), "-o", str(busy), "--no-progress"]) == 2
    line = _one_line(capsys)
    assert line.startswith(f"styleid eval: error: --output: {busy}: holds 'notes.txt'") and time.perf_counter() - start < 5
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"]
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert run(["eval", "--model", "test-tiny", "--pairs", str(data["full"]), "-o", str(a_file)]) == 2
    assert "is a file" in _one_line(capsys)
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert run(["eval", "--model", "test-tiny", "--pairs", str(data["full"]), "-o", str(locked / "o")]) == 2
        assert "cannot write" in _one_line(capsys)


@pytest.mark.parametrize("online_check", [False, True], ids=["HF_HUB_OFFLINE", "host-unreachable"])
def test_offline_baselines_fail_fast_with_one_line(tmp_path, data, capsys, monkeypatch, online_check):
    import huggingface_hub.constants
    import open_clip  # noqa: F401  (imported up front: the time measured is the check, not the import)

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr("styleid_guidance.baselines.adaface.ADAFACE_HOME", tmp_path / "no-adaface")
    monkeypatch.setenv("INSIGHTFACE_HOME", str(tmp_path / "no-insightface"))
    import styleid_guidance.faces.insightface_app  # noqa: F401  (imported up front, as open_clip)
    if online_check:  # no offline flag: the Hub's host is probed (the test harness refuses connections)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("STYLEID_OFFLINE", raising=False)
    for baseline, message, hint in (("clip", "clip weights ViT-L-14/openai are not in the Hugging Face cache", "hf download"),
                                    ("siglip2", "siglip2 weights", "hf download timm/ViT-L-16-SigLIP2-256"),
                                    ("adaface", "AdaFace weights not found", "--baseline adaface=PATH"),
                                    ("antelopev2", "insightface pack 'antelopev2' not found", "--baseline antelopev2=FOLDER")):
        start = time.perf_counter()
        code = run(["eval", "--model", "none", "--pairs", str(data["full"]), "-o", str(tmp_path / baseline),
                    "--baseline", baseline, "--no-progress", "--device", "cpu"])
        elapsed = time.perf_counter() - start
        line = _one_line(capsys)
        assert code == 2 and message in line and hint in line and elapsed < 1.0, (line, elapsed)
        assert not (tmp_path / baseline).exists() or not any(p.suffix == ".json" for p in (tmp_path / baseline).iterdir())
