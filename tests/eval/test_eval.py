"""`styleid eval`: metrics.json, Table-1 markdown, PNG plots, and the embedding cache."""
from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
import torch

from styleid_guidance import StyleIDEncoder
from styleid_guidance.errors import StyleIDError
from styleid_guidance.eval import evaluate, read_pairs
from styleid_guidance.metrics.verification import verification_report
from styleid_guidance.tiny.smoke_data import make_smoke_dataset

REPORT_KEYS = {"auroc", "tpr@1e-2", "tpr@1e-3", "tpr@1e-4", "acc@0.3", "acc@0.4", "acc@0.5", "n"}
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    paths = make_smoke_dataset(root / "data", train_ids=2, eval_ids=4, levels=(2, 5), size=48)
    torch.manual_seed(0)
    model_dir = StyleIDEncoder.from_open_clip("test-tiny", pretrained=None, lora_rank=4).save_pretrained(root / "model")
    # a few pairs of every split, for the slower models (a random IR-SE50 costs ~0.2 s per image on CPU)
    rows = list(csv.DictReader(open(paths["pairs"])))
    small = [r for split in ("cross-id", "cross-style", "cross-method") for r in [x for x in rows if x["split"] == split][:2]]
    for name, subset in (("small", small), ("two", rows[:2])):  # rows[:2]: one image vs its own and another source
        paths[name] = paths["pairs"].with_name(f"{name}.csv")
        with open(paths[name], "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(subset)
    return paths, model_dir


def _png_ok(path):
    data = path.read_bytes()
    return data[:8] == PNG and len(data) > 2000


def test_eval_outputs_and_cache(tmp_path, setup):
    paths, model_dir = setup
    out = tmp_path / "out"
    first = evaluate(model_dir, paths["pairs"], out, baselines=["clip=test-tiny"], progress=False)
    pairs = read_pairs(paths["pairs"])
    n_files = len({p.source for p in pairs} | {p.stylized for p in pairs})
    assert first.computed == {"styleid": n_files, "clip": n_files}

    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == ["styleid", "clip"]
    for model in metrics.values():
        assert set(model) == {"overall", "split", "method", "style", "strength"}
        assert set(model["overall"]) == REPORT_KEYS and model["overall"]["n"] == len(pairs)
        assert list(model["split"]) == ["cross-id", "cross-style", "cross-method"]
        assert list(model["strength"]) == ["2", "5"]
        assert set(model["method"]) == {"toon", "paint", "mosaic"}
        for group in ("split", "method", "style", "strength"):
            assert sum(r["n"] for r in model[group].values()) == len(pairs)
            assert all(set(r) == REPORT_KEYS for r in model[group].values())

    # the numbers are the verification report of the encoder's own cosine similarities
    enc = StyleIDEncoder.from_pretrained(model_dir)
    files = sorted({p.source for p in pairs} | {p.stylized for p in pairs})
    with torch.no_grad():
        z = dict(zip(files, enc.embed([str(f) for f in files], crop="center")))
    sims = [float(z[p.source] @ z[p.stylized]) for p in pairs]
    expected = verification_report(np.array(sims), np.array([p.label for p in pairs]))
    for key in REPORT_KEYS:
        assert metrics["styleid"]["overall"][key] == pytest.approx(expected[key], abs=1e-5)

    table = (out / "table.md").read_text().splitlines()
    header = next(line for line in table if line.startswith("| Model"))
    assert header == "| Model | Cross-ID | Cross-Style | Cross-Method | All |"
    rows = [line for line in table if line.startswith("| styleid") or line.startswith("| clip")]
    assert len(rows) == 2
    cell = rows[0].split("|")[2].strip().strip("*")
    assert len(cell.split("/")) == 5
    assert cell.split("/")[-1] == f"{metrics['styleid']['split']['cross-id']['auroc']:.3f}".lstrip("0")
    for name in ("roc.png", "roc_log.png", "similarity_vs_strength.png"):
        assert _png_ok(out / name), name



def test_cache_serves_earlier_models_when_a_baseline_is_added(tmp_path, setup):
    paths, model_dir = setup
    out = tmp_path / "out"
    small = read_pairs(paths["two"])
    n_files = len({p.source for p in small} | {p.stylized for p in small})
    assert n_files == 3
    first = evaluate(model_dir, paths["two"], out, progress=False)
    assert first.computed == {"styleid": n_files}
    second = evaluate(model_dir, paths["two"], out, baselines=["arcface=random"], progress=False)
    assert second.computed == {"styleid": 0, "arcface": n_files}
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == ["styleid", "arcface"] and set(metrics["arcface"]["overall"]) == REPORT_KEYS
    assert metrics["styleid"] == first.metrics["styleid"]
    # a changed image is recomputed, the rest is not; another crop is another cache entry
    changed = small[0].stylized
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    assert evaluate(model_dir, paths["two"], out, progress=False).computed == {"styleid": 1}
    assert evaluate(model_dir, paths["two"], out, crop="none", progress=False).computed == {"styleid": n_files}


def test_bf16_eval_is_its_own_cache_entry_and_stays_near_fp32(tmp_path, setup):
    paths, model_dir = setup
    out = tmp_path / "out"
    exact = evaluate(model_dir, paths["pairs"], out, baselines=["clip=test-tiny"], progress=False)
    fast = evaluate(model_dir, paths["pairs"], out, baselines=["clip=test-tiny"], progress=False, precision="bf16")
    assert all(n > 0 for n in fast.computed.values())  # bf16 embeddings are not served the fp32 cache, nor back
    again = evaluate(model_dir, paths["pairs"], out, baselines=["clip=test-tiny"], progress=False)
    assert again.computed == {"styleid": 0, "clip": 0} and again.metrics == exact.metrics
    for model in ("styleid", "clip"):
        assert abs(fast.metrics[model]["overall"]["auroc"] - exact.metrics[model]["overall"]["auroc"]) <= 0.02
    with pytest.raises(StyleIDError, match="precision must be one of"):
        evaluate(model_dir, paths["pairs"], out, progress=False, precision="int8")


def test_cli_eval_and_errors(tmp_path, setup, capsys):
    from styleid_guidance.cli import main

    paths, model_dir = setup
    out = tmp_path / "cli"
    with pytest.raises(SystemExit) as done:
        main(["eval", "--model", str(model_dir), "--pairs", str(paths["small"]), "--output", str(out),
              "--baseline", "clip=test-tiny", "--no-progress", "--device", "cpu", "--crop", "center"])
    assert done.value.code == 0
    printed = capsys.readouterr().out
    assert "| Model | Cross-ID" in printed and (out / "metrics.json").is_file()

    bad = tmp_path / "bad.csv"
    bad.write_text("source,stylised,label\na.png,b.png,1\n")
    with pytest.raises(SystemExit) as done:
        main(["eval", "--model", str(model_dir), "--pairs", str(bad), "--output", str(tmp_path / "x")])
    assert done.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing column(s) stylized" in err[0]
    with pytest.raises(SystemExit) as done:
        main(["eval", "--model", "none", "--pairs", str(paths["pairs"]), "--output", str(tmp_path / "y"), "--baseline", "facenet"])
    assert done.value.code == 2 and "--baseline facenet: choose from" in capsys.readouterr().err


def test_pairs_validation_and_minimal_csv(tmp_path, setup):
    paths, model_dir = setup
    data = paths["pairs"].parent
    rows = list(csv.DictReader(open(paths["pairs"])))
    minimal = data / "minimal.csv"
    with open(minimal, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["source", "stylized", "label"])
        w.writerows([r["source"], r["stylized"], r["label"]] for r in rows[:40])
    res = evaluate(None, minimal, tmp_path / "m", baselines=["clip=test-tiny"], cache_dir=None, progress=False)
    assert set(res.metrics["clip"]) == {"overall"}
    assert "similarity_vs_strength" not in res.files and _png_ok(res.files["roc"])
    assert "| Model | All |" in res.files["table"].read_text()

    for body, message in (("source,stylized,label\nx.png,y.png,1\n", "minimal_bad.csv:2: source image 'x.png' not found"),
                          (f"source,stylized,label\n{rows[0]['source']},{rows[0]['stylized']},yes\n", "label must be 0 or 1")):
        bad = data / "minimal_bad.csv"
        bad.write_text(body)
        with pytest.raises(StyleIDError, match=message):
            read_pairs(bad)
    with pytest.raises(StyleIDError, match="model names must be unique"):
        evaluate(model_dir, minimal, tmp_path / "d", baselines=["clip=test-tiny"], name="clip", progress=False)
