"""`styleid eval` with human judgements: metrics.json / table.md / scores.csv / plots, and the Table-1 preset."""
from __future__ import annotations

import csv
import json
import random

import numpy as np
import pytest
import torch
from scipy import stats

from styleid_guidance.baselines.adaface import AdaFaceIR
from styleid_guidance.errors import StyleIDError
from styleid_guidance.eval import evaluate, read_pairs
from styleid_guidance.metrics.verification import verification_report
from styleid_guidance.tiny.smoke_data import make_smoke_dataset

PNG = b"\x89PNG\r\n\x1a\n"
HUMAN_KEYS = {"n", "judgements", "spearman", "spearman_p", "kendall", "kendall_p", "human_mean", "n_tied",
              "agree@0.3", "agree@0.4", "agree@0.5", "calibration"}


def _write(path, rows, fields):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("human")
    paths = make_smoke_dataset(root / "data", train_ids=2, eval_ids=4, levels=(2, 5), size=48)
    rows = list(csv.DictReader(open(paths["pairs"])))
    rng = random.Random(0)
    for i, r in enumerate(rows):
        # rates of a 20-rater panel, with a few pairs nobody judged (empty cell)
        r["human"] = "" if i % 17 == 5 else str(rng.randint(0, 20) / 20 if r["label"] == "0" else rng.randint(8, 20) / 20)
        r["human_n"] = "0" if i % 17 == 5 else "20"
        r["note"] = f"row{i}"  # an extra column the user keeps: scores.csv carries it along
    fields = [*rows[0].keys()]
    paths["human"] = _write(root / "data" / "human.csv", rows, fields)
    small = [r for split in ("cross-id", "cross-style", "cross-method") for r in [x for x in rows if x["split"] == split][:3]]
    paths["small"] = _write(root / "data" / "small.csv", small, fields)
    # a tiny AdaFace checkpoint in the released layout (prefixed backbone + margin head)
    torch.manual_seed(0)
    model = AdaFaceIR(stages=(1, 1, 1, 1), widths=(8, 16, 24, 32), embedding_dim=16).eval()
    state = {f"model.{k}": v for k, v in model.state_dict().items()} | {"head.kernel": torch.randn(16, 5)}
    paths["adaface"] = root / "adaface_ir101_webface4m.ckpt"
    torch.save({"state_dict": state}, paths["adaface"])
    return paths


def test_human_alignment_in_metrics_table_scores_and_plots(tmp_path, data):
    out = tmp_path / "out"
    res = evaluate("test-tiny", data["human"], out, baselines=["adaface=" + str(data["adaface"])], crop="center", progress=False)
    pairs = read_pairs(data["human"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == ["styleid", "adaface"]
    for model in metrics.values():
        assert set(model["human"]) == HUMAN_KEYS
        assert model["human"]["n"] == sum(p.human is not None for p in pairs)
        assert model["human"]["judgements"] == 20 * model["human"]["n"]
        assert set(model["human"]["calibration"]) == {"slope", "intercept", "p50", "brier", "ece"}
        for group in ("split", "method", "style", "strength"):
            assert all(set(r["human"]) == HUMAN_KEYS for r in model[group].values())
            assert sum(r["human"]["n"] for r in model[group].values()) == model["human"]["n"]

    # scores.csv: the CSV's own columns verbatim, then one similarity column per model
    with open(out / "scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    original = list(csv.DictReader(open(data["human"])))
    assert list(rows[0]) == [*original[0], "styleid", "adaface"]
    assert [{k: r[k] for k in original[0]} for r in rows] == original
    labels = np.array([int(r["label"]) for r in rows])
    human = np.array([float(r["human"]) if r["human"] else np.nan for r in rows])
    judged = np.isfinite(human)
    for name in ("styleid", "adaface"):
        s = np.array([float(r[name]) for r in rows])
        # every number is recomputable from the file
        assert metrics[name]["overall"]["auroc"] == pytest.approx(verification_report(s, labels)["auroc"], abs=1e-12)
        assert metrics[name]["human"]["spearman"] == pytest.approx(stats.spearmanr(s[judged], human[judged]).statistic, abs=1e-12)
        assert metrics[name]["human"]["kendall"] == pytest.approx(
            stats.kendalltau(s[judged], human[judged], variant="b").statistic, abs=1e-12)
        for split, report in metrics[name]["split"].items():
            sel = judged & np.array([r["split"] == split for r in rows])
            assert report["human"]["spearman"] == pytest.approx(stats.spearmanr(s[sel], human[sel]).statistic, abs=1e-12)
        decided = judged & (human != 0.5)
        agree = float(((s[decided] >= 0.4) == (human[decided] > 0.5)).mean())
        assert metrics[name]["human"]["agree@0.4"] == pytest.approx(agree)

    table = (out / "table.md").read_text()
    assert "| Model | Spearman ρ | Kendall τ-b |" in table
    rho = metrics["styleid"]["human"]["spearman"]
    assert f"{rho:+.3f}" in table
    for key in ("human_scatter", "human_vs_strength", "similarity_vs_strength", "roc", "scores"):
        assert res.files[key].is_file(), key
    for key in ("human_scatter", "human_vs_strength"):
        data_bytes = res.files[key].read_bytes()
        assert data_bytes[:8] == PNG and len(data_bytes) > 5000


@pytest.mark.parametrize("column,value", [("human", "abc"), ("human", "1.5"), ("human", "-0.1"), ("human", "nan"),
                                          ("human", "75%"), ("human_n", "0"), ("human_n", "2.5"), ("human_n", "-1")])
def test_bad_human_values_are_one_line_errors_naming_the_row(tmp_path, data, column, value, capsys):
    from styleid_guidance.cli import run

    rows = list(csv.DictReader(open(data["small"])))
    rows[2]["human"], rows[2]["human_n"] = "0.5", "4"
    rows[2][column] = value
    bad = _write(data["small"].with_name(f"bad_{column}_{abs(hash(value))}.csv"), rows, list(rows[0]))
    with pytest.raises(StyleIDError, match=rf"{bad.name}:4: {column} must be"):
        read_pairs(bad)
    assert run(["eval", "--model", "test-tiny", "--pairs", str(bad), "-o", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"styleid eval: error: --pairs: {bad}:4: {column} ") and repr(value) in err[0]
    assert not (tmp_path / "o").exists()


def test_table1_preset(tmp_path, data):
    from styleid_guidance.faces.insightface_app import FaceApp
    from styleid_guidance.tiny.insightface_pack import tiny_pack

    out = tmp_path / "t1"
    pack = tiny_pack()
    kwargs = dict(baselines=["clip=test-tiny", "arcface=random", f"adaface={data['adaface']}", f"antelopev2={pack}"],
                  table1=True, detector="mtcnn", progress=False)
    res = evaluate("test-tiny", data["small"], out, **kwargs)
    # siglip2's weights cannot be had offline: listed, not fatal
    assert list(res.metrics) == ["clip", "arcface", "adaface", "antelopev2", "styleid"]
    assert set(res.skipped) == {"siglip2"} and "siglip2 weights" in res.skipped["siglip2"]
    table = (out / "table.md").read_text()
    assert "| Model | Cross-ID | Cross-Style | Cross-Method |" in table
    assert "- siglip2: " in table and "Skipped" in table
    assert "arcface: aligned 112-px face" in table and "styleid: whole portrait (resize + centre crop)" in table
    n_images = len({p.source for p in read_pairs(data["small"])} | {p.stylized for p in read_pairs(data["small"])})
    # antelopev2 as InstantID uses it: insightface's largest face and raw embedding (normalised for the cosine)
    app = FaceApp(pack, device="cpu")
    first = read_pairs(data["small"])[0]
    z = [torch.nn.functional.normalize(torch.from_numpy(app.largest_face(f).embedding), dim=0) for f in (first.source, first.stylized)]
    with open(out / "scores.csv", newline="") as f:
        assert float(next(csv.DictReader(f))["antelopev2"]) == pytest.approx(float(z[0] @ z[1]), abs=1e-5)
    for name in ("arcface", "adaface", "antelopev2"):
        assert res.metrics[name]["no_face_images"] == res.no_face[name] <= n_images
        if res.no_face[name]:
            assert f"{name}: no face found in {res.no_face[name]} of {n_images} images" in table
    # the CLIP-family models used the centre crop: same numbers as a plain --crop center run
    plain = evaluate("test-tiny", data["small"], tmp_path / "plain", crop="center", progress=False)
    assert res.metrics["styleid"]["overall"] == plain.metrics["styleid"]["overall"]
    # the cache serves a second run, fallback counts included
    again = evaluate("test-tiny", data["small"], out, **kwargs)
    assert again.computed == {"clip": 0, "arcface": 0, "adaface": 0, "antelopev2": 0, "styleid": 0}
    assert again.no_face == res.no_face and again.metrics == res.metrics


def test_table1_on_pairs_outside_the_papers_splits_adds_an_all_column(tmp_path, data):
    rows = list(csv.DictReader(open(data["small"], newline="")))
    generated = data["small"].with_name("generated.csv")
    with open(generated, "w", newline="") as f:  # as `styleid generate --pairs` writes them
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**r, "split": "generated"} for r in rows)
    res = evaluate("test-tiny", generated, tmp_path / "t1", baselines=["clip=test-tiny"], table1=True, detector="mtcnn",
                   progress=False)
    table = (tmp_path / "t1" / "table.md").read_text()
    assert "| Model | Cross-ID | Cross-Style | Cross-Method | All |" in table
    row = next(line for line in table.splitlines() if line.startswith("| styleid"))
    assert row.rstrip(" |").split("/")[-1].strip("* ") == f"{res.metrics['styleid']['overall']['auroc']:.3f}".lstrip("0")


def test_table1_cli_refuses_a_crop_and_fails_when_nothing_loads(tmp_path, data, capsys):
    from styleid_guidance.cli import run

    assert run(["eval", "--pairs", str(data["small"]), "-o", str(tmp_path / "a"), "--table1", "--crop", "center"]) == 2
    assert "--table1 sets each model's crop" in capsys.readouterr().err
    with pytest.raises(StyleIDError, match="no model could be evaluated"):
        evaluate(None, data["small"], tmp_path / "b", baselines=["clip=ViT-B-32/nonexistent-tag", "arcface=/nope",
                                                                 f"adaface={tmp_path}"], table1=True, progress=False)
    assert not (tmp_path / "b").exists()
