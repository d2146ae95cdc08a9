"""deepface-shaped `styleid verify --json` / VerificationResult, and the confidence from eval's human calibration."""
from __future__ import annotations

import csv
import json
import math
import random

import pytest

from styleid_guidance.cli import run
from styleid_guidance.files.embeddings import read_embeddings
from styleid_guidance.tiny.smoke_data import make_smoke_dataset

DEEPFACE_KEYS = {"verified", "threshold", "model", "detector_backend", "facial_areas", "time", "similarity", "confidence",
                 "similarity_metric", "img1_path", "img2_path"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from styleid_guidance import StyleIDEncoder

    root = tmp_path_factory.mktemp("verify")
    paths = make_smoke_dataset(root / "data", train_ids=2, eval_ids=3, levels=(2,), size=48)
    rows = list(csv.DictReader(open(paths["pairs"])))
    rng = random.Random(0)
    for r in rows:
        r["human"] = str(rng.randint(0, 10) / 10 if r["label"] == "0" else rng.randint(5, 10) / 10)
    with open(paths["pairs"].with_name("human.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    paths["human"] = paths["pairs"].with_name("human.csv")
    paths["model"] = StyleIDEncoder.from_open_clip("test-tiny", pretrained=None, lora_rank=2).save_pretrained(root / "model")
    paths["root"] = root
    first = paths["pairs"].parent / rows[0]["source"]
    paths["a"], paths["b"] = first, paths["pairs"].parent / rows[0]["stylized"]
    return paths


def _run(argv, capsys):
    code = run(argv)
    out, err = capsys.readouterr()
    return code, out, err


COMMON = ["--crop", "center", "--precision", "fp32", "--device", "cpu"]


def test_eval_saves_the_calibration_and_verify_reports_confidence(setup, tmp_path, capsys):
    model = setup["model"]
    code, _, err = _run(["eval", "--model", str(model), "--pairs", str(setup["human"]), "-o", str(tmp_path / "ev"),
                         "--save-calibration", "--no-progress", *COMMON], capsys)
    assert code == 0, err
    fit = json.loads((tmp_path / "ev" / "metrics.json").read_text())["styleid"]["human"]["calibration"]
    saved = json.loads((model / "calibration.json").read_text())
    assert saved["slope"] == fit["slope"] and saved["intercept"] == fit["intercept"]

    code, out, err = _run(["verify", str(setup["a"]), str(setup["b"]), "--model", str(model), "--json", "-", *COMMON], capsys)
    assert code == 0, err
    res = json.loads(out)
    assert set(res) == DEEPFACE_KEYS and res["similarity_metric"] == "cosine_similarity"
    # the similarity is `embed` + cosine
    (setup["root"] / "pair").mkdir(exist_ok=True)
    for p in (setup["a"], setup["b"]):
        (setup["root"] / "pair" / p.name).write_bytes(p.read_bytes())
    assert _run(["embed", str(setup["root"] / "pair"), "-o", str(tmp_path / "e.safetensors"), "--model", str(model), *COMMON], capsys)[0] == 0
    emb, names = read_embeddings(tmp_path / "e.safetensors")
    z = dict(zip(names, emb.double()))
    want = float(z[setup["a"].name] @ z[setup["b"].name])
    assert res["similarity"] == pytest.approx(want, abs=1e-5)
    assert res["verified"] == (want >= 0.4) and res["threshold"] == 0.4 and res["model"] == str(model)
    assert res["confidence"] == pytest.approx(100 / (1 + math.exp(-(fit["slope"] * want + fit["intercept"]))), abs=0.01)
    assert res["detector_backend"] == "skip" and res["time"] >= 0
    side = min(__import__("PIL.Image", fromlist=["open"]).open(setup["a"]).size)
    assert res["facial_areas"]["img1"]["w"] == side and res["facial_areas"]["img1"]["h"] == side


def test_verify_json_file_and_several_images_without_calibration(setup, tmp_path, capsys, astronaut):
    for i, name in enumerate(("face.png", "b.jpg", "c.jpg")):
        astronaut.crop((60 + 10 * i, 0, 420 + 10 * i, 360)).resize((128, 128)).save(tmp_path / name)
    out_file = tmp_path / "v.json"
    code, out, err = _run(["verify", *(str(tmp_path / n) for n in ("face.png", "b.jpg", "c.jpg")), "--model", "test-tiny",
                           "--json", str(out_file), "--precision", "fp32", "--device", "cpu", "--crop", "face", "--detector", "mtcnn"], capsys)
    assert code == 0, err
    res = json.loads(out_file.read_text())
    assert isinstance(res, list) and len(res) == 2 and all(r["confidence"] is None for r in res)
    area = res[0]["facial_areas"]["img1"]
    assert res[0]["detector_backend"] == "mtcnn" and area["w"] > 10 and area["left_eye"][0] > area["right_eye"][0]
    assert len(out.strip().splitlines()) == 2  # the text lines still print


def test_the_python_result_object(astronaut):
    from styleid_guidance.score.verification import VerificationResult, verify

    r = verify(astronaut, astronaut.rotate(5), "test-tiny", crop="center", precision="fp32")
    assert isinstance(r, VerificationResult) and r.verified and r.similarity > 0.9 and r.confidence is None
    assert set(r.to_dict()) == DEEPFACE_KEYS


@pytest.mark.parametrize("model, pairs_key, message", [
    ("test-tiny", "human", "not a local folder"),
    (None, "pairs", "no `human` column"),
])
def test_save_calibration_refuses_before_any_work(setup, tmp_path, capsys, model, pairs_key, message):
    code, _, err = _run(["eval", "--model", model or str(setup["model"]), "--pairs", str(setup[pairs_key]), "-o", str(tmp_path / "ev"),
                         "--save-calibration", "--no-progress", *COMMON], capsys)
    assert code == 2 and message in err.strip().splitlines()[-1] and not (tmp_path / "ev").exists()


def test_a_damaged_calibration_is_one_line(setup, tmp_path, capsys):
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(setup["model"], folder)
    (folder / "calibration.json").write_text("{not json")
    code, _, err = _run(["verify", str(setup["a"]), str(setup["b"]), "--model", str(folder), *COMMON], capsys)
    assert code == 2 and "calibration.json" in err and "Traceback" not in err
