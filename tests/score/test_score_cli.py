"""`styleid score`: every pairing mode equals `styleid embed` + cosine by hand; bad input is one line, exit 2."""
from __future__ import annotations

import csv
import json
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from styleid_guidance.cli import run
from styleid_guidance.files.embeddings import read_embeddings
from support import SCORE_TINY, score_cache  # noqa: F401 (score_cache: an autouse fixture)

LINE = re.compile(r"^(?P<name>[^:]+): (?P<mean>-?\d\.\d{3}) ± (?P<std>\d\.\d{3}) \(n=(?P<n>\d+), no_face=(?P<nf>\d+), "
                  r"verified=(?P<v>\d\.\d\d) @(?P<t>-?\d\.\d\d)")


def _crop(img: Image.Image, i: int, size: int = 80) -> Image.Image:
    x, y = 120 + 9 * i, 20 + 5 * i
    return img.crop((x, y, x + 260, y + 260)).resize((size, size))


@pytest.fixture
def data(tmp_path, astronaut, camera):
    """refs/{a,b,sub/c}.png and gen/{a,b,sub/c}.jpg (jittered crops of the same pictures), one reference photo."""
    refs, gen, one = tmp_path / "refs", tmp_path / "gen", tmp_path / "one"
    for d in (refs / "sub", gen / "sub", one):
        d.mkdir(parents=True)
    pics = {"a": astronaut, "b": camera, "sub/c": astronaut.rotate(8)}
    for k, (name, img) in enumerate(pics.items()):
        _crop(img, k).save(refs / f"{name}.png")
        _crop(img, k + 3).save(gen / f"{name}.jpg", quality=90)
    _crop(astronaut, 1).save(one / "me.png")
    return {"refs": refs, "gen": gen, "one": one, "ref": one / "me.png", "tmp": tmp_path}


def _run(argv, capsys):
    code = run(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _embed(folder, out, capsys, *extra):
    code, _, err = _run(["embed", str(folder), "-o", str(out), *SCORE_TINY, *extra], capsys)
    assert code == 0, err
    emb, names = read_embeddings(out)
    return dict(zip(names, emb.double()))


def _score(argv, capsys, tmp):
    code, out, err = _run(["score", *argv, *SCORE_TINY, "--csv", str(tmp / "s.csv"), "--json", str(tmp / "s.json")], capsys)
    assert code == 0, err
    rows = list(csv.DictReader(open(tmp / "s.csv")))
    return out, rows, json.loads((tmp / "s.json").read_text())


def _check(rows, summary, expected, threshold=0.4):
    got = {(r["reference"], r["generated"]): float(r["similarity"]) for r in rows}
    assert got.keys() == expected.keys()
    for k, v in expected.items():
        assert got[k] == pytest.approx(v, abs=1e-5), k
    vals = np.array(list(expected.values()))
    s = summary["models"]["StyleID"]
    assert s["similarity"] == pytest.approx(vals.mean(), abs=1e-5) and s["n"] == len(vals)
    assert s["std"] == pytest.approx(vals.std(ddof=1), abs=1e-5)
    assert s["verified"] == pytest.approx((vals >= threshold).mean())


def test_one_reference_against_a_folder_equals_embed_and_cosine(data, capsys):
    ref = _embed(data["one"], data["tmp"] / "r.safetensors", capsys)["me.png"]
    gen = _embed(data["gen"], data["tmp"] / "g.safetensors", capsys)
    out, rows, summary = _score([str(data["ref"]), str(data["gen"])], capsys, data["tmp"])
    expected = {("me.png", n): float(ref @ z) for n, z in gen.items()}
    _check(rows, summary, expected)
    m = LINE.match(out.strip())
    assert m and m["name"] == "StyleID" and int(m["n"]) == 3 and m["t"] == "0.40", out
    assert float(m["mean"]) == pytest.approx(np.mean(list(expected.values())), abs=1e-3)
    assert summary["pairing"] == "one"
    code, out, err = _run(["score", str(data["ref"]), str(data["gen"]), *SCORE_TINY, "--json", "-"], capsys)
    assert code == 0 and json.loads(out)["models"]["StyleID"]["similarity"] == pytest.approx(summary["models"]["StyleID"]["similarity"])


def test_folders_pair_by_relative_path_and_stem(data, capsys):
    ref = _embed(data["refs"], data["tmp"] / "r.safetensors", capsys)
    gen = _embed(data["gen"], data["tmp"] / "g.npy", capsys)
    _, rows, summary = _score([str(data["refs"]), str(data["gen"])], capsys, data["tmp"])
    expected = {(n, n.replace(".png", ".jpg")): float(z @ gen[n.replace(".png", ".jpg")]) for n, z in ref.items()}
    assert ("sub/c.png", "sub/c.jpg") in expected
    _check(rows, summary, expected)
    # the embeddings files themselves as inputs: the same numbers, without embedding again
    _, rows2, summary2 = _score([str(data["tmp"] / "r.safetensors"), str(data["tmp"] / "g.npy")], capsys, data["tmp"])
    expected2 = {(n, n.replace(".png", ".jpg")): v for (n, _), v in expected.items()}
    _check(rows2, summary2, expected2)
    # no decoding threads, batches of one: the same numbers
    _, rows3, summary3 = _score([str(data["refs"]), str(data["gen"]), "--num-workers", "0", "--batch-size", "1", "--no-cache"],
                                capsys, data["tmp"])
    _check(rows3, summary3, expected)


def test_pairs_csv(data, capsys):
    ref = _embed(data["refs"], data["tmp"] / "r.safetensors", capsys)
    gen = _embed(data["gen"], data["tmp"] / "g.safetensors", capsys)
    pairs = data["tmp"] / "pairs.csv"
    # names inside REF/GEN, or paths relative to the CSV; a reference may serve several generated images
    pairs.write_text("reference,generated\na.png,b.jpg\nrefs/a.png,gen/sub/c.jpg\nb.png,b.jpg\n")
    _, rows, summary = _score([str(data["refs"]), str(data["gen"]), "--pairs", str(pairs)], capsys, data["tmp"])
    expected = {("a.png", "b.jpg"): float(ref["a.png"] @ gen["b.jpg"]), ("a.png", "sub/c.jpg"): float(ref["a.png"] @ gen["sub/c.jpg"]),
                ("b.png", "b.jpg"): float(ref["b.png"] @ gen["b.jpg"])}
    _check(rows, summary, expected)
    assert summary["pairing"] == "pairs"


def test_reference_set_uses_the_mean_embedding_and_reports_the_spread(data, capsys):
    ref = _embed(data["refs"], data["tmp"] / "r.safetensors", capsys)
    gen = _embed(data["gen"], data["tmp"] / "g.safetensors", capsys)
    out, rows, summary = _score([str(data["refs"]), str(data["gen"]), "--reference-set", "--threshold", "0.9"], capsys, data["tmp"])
    refs = torch.stack(list(ref.values()))
    mean = torch.nn.functional.normalize(refs.mean(0), dim=-1)
    expected = {("mean", n): float(mean @ z) for n, z in gen.items()}
    _check(rows, summary, expected, threshold=0.9)
    sims = (refs @ refs.T)[~torch.eye(3, dtype=torch.bool)].numpy()
    base = summary["models"]["StyleID"]["baseline"]
    assert base["k"] == 3 and base["similarity"] == pytest.approx(sims.mean(), abs=1e-5)
    assert base["std"] == pytest.approx(sims.std(ddof=1), abs=1e-5)
    assert "baseline=" in out and "@0.90" in out


def test_several_models_in_one_pass_and_a_student_folder(data, capsys):
    from styleid_guidance import StyleIDEncoder

    student = StyleIDEncoder.from_open_clip("test-tiny", pretrained=None, lora_rank=2).save_pretrained(data["tmp"] / "student")
    want = _embed(data["gen"], data["tmp"] / "g.safetensors", capsys, "--model", str(student))
    r = _embed(data["one"], data["tmp"] / "r.safetensors", capsys, "--model", str(student))["me.png"]
    code, out, err = _run(["score", str(data["ref"]), str(data["gen"]), *SCORE_TINY, "--model", str(student), "--model", "clip=test-tiny",
                           "--json", str(data["tmp"] / "s.json")], capsys)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert [LINE.match(line)["name"] for line in lines] == ["StyleID (test-tiny)", "StyleID (student)", "CLIP"]
    got = json.loads((data["tmp"] / "s.json").read_text())["models"]["StyleID (student)"]
    assert got["similarity"] == pytest.approx(np.mean([float(r @ z) for z in want.values()]), abs=1e-5)


def test_cache_is_by_content(data, capsys):
    from styleid_guidance.score import score

    kw = dict(models=["test-tiny"], crop="center", device="cpu", cache_dir=data["tmp"] / "c")
    first = score(data["refs"], data["gen"], **kw)
    assert first.computed == {"StyleID": 6}
    moved = data["tmp"] / "moved"
    shutil.copytree(data["gen"], moved)  # new paths and mtimes, same bytes
    second = score(data["refs"], moved, **kw)
    assert second.computed == {"StyleID": 0}
    np.testing.assert_allclose(second.models[0].similarity, first.models[0].similarity, atol=1e-6)
    _crop(Image.open(data["refs"] / "a.png"), 4).save(moved / "a.jpg")  # changed content: embedded again
    assert score(data["refs"], moved, **kw).computed == {"StyleID": 1}
    assert score(data["refs"], moved, **{**kw, "cache_dir": None}).computed == {"StyleID": 6}


def test_no_face_policies(data, capsys):
    """With --crop face, a picture without a face: centre crop (counted), left out, or an error."""
    noise = data["tmp"] / "noise"
    shutil.copytree(data["gen"], noise)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (80, 80, 3), dtype=np.uint8)).save(noise / "b.jpg")
    gen = _embed(noise, data["tmp"] / "g.safetensors", capsys)  # centre crops, to compare with the fallback
    face = ["--crop", "face", "--detector", "mtcnn"]
    code, out, err = _run(["score", str(data["ref"]), str(noise), *SCORE_TINY, *face, "--json", str(data["tmp"] / "s.json"),
                           "--csv", str(data["tmp"] / "s.csv")], capsys)
    assert code == 0, err
    summary = json.loads((data["tmp"] / "s.json").read_text())["models"]["StyleID"]
    rows = {r["generated"]: r for r in csv.DictReader(open(data["tmp"] / "s.csv"))}
    assert summary["no_face"] >= 1 and rows["b.jpg"]["no_face"] == "1" and "no_face=" in out
    if summary["no_face"] == 1:  # the reference and the other crops have a face: only the noise fell back
        ref_c = _embed(data["one"], data["tmp"] / "r.safetensors", capsys, "--crop", "face", "--detector", "mtcnn")["me.png"]
        assert float(rows["b.jpg"]["similarity"]) == pytest.approx(float(ref_c @ gen["b.jpg"]), abs=1e-5)
    code, out, _ = _run(["score", str(data["ref"]), str(noise), *SCORE_TINY, *face, "--no-face", "skip", "--json",
                         str(data["tmp"] / "k.json")], capsys)
    skipped = json.loads((data["tmp"] / "k.json").read_text())["models"]["StyleID"]
    assert code == 0 and skipped["skipped"] >= 1 and skipped["n"] == 3 - skipped["skipped"] and "skipped=" in out
    code, _, err = _run(["score", str(data["ref"]), str(noise), *SCORE_TINY, *face, "--no-face", "error", "--no-cache"], capsys)
    assert code == 2 and "no face" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def _damaged(tmp):
    bad = tmp / "damaged"
    bad.mkdir()
    (bad / "x.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return bad


def _other_model(tmp):
    from styleid_guidance.files.embeddings import write_embeddings

    write_embeddings(tmp / "other.safetensors", torch.nn.functional.normalize(torch.randn(3, 7), dim=-1),
                     ["a.png", "b.png", "sub/c.png"], model="someone/else")
    write_embeddings(tmp / "wide.safetensors", torch.nn.functional.normalize(torch.randn(3, 7), dim=-1),
                     ["a.png", "b.png", "sub/c.png"], model="")
    return tmp


@pytest.mark.parametrize("case, message", [
    (lambda d: [str(d["tmp"] / "nope"), str(d["gen"])], "no such file or folder"),
    (lambda d: [str(d["ref"]), str((d["tmp"] / "empty").mkdir() or d["tmp"] / "empty")], "no images"),
    (lambda d: [str(d["ref"]), str(_damaged(d["tmp"]))], "x.png"),
    (lambda d: [str((d["tmp"] / "bad.safetensors").write_bytes(b"garbage") and d["tmp"] / "bad.safetensors"), str(d["gen"])],
     "not an embeddings file"),
    (lambda d: [str(_other_model(d["tmp"]) / "other.safetensors"), str(d["gen"])], "embeddings of model 'someone/else'"),
    (lambda d: [str(_other_model(d["tmp"]) / "wide.safetensors"), str(d["gen"])], "dimension 7"),
    (lambda d: [str(d["refs"]), str(d["one"])], "have no reference of the same name"),
    (lambda d: [str(d["refs"]), str(d["gen"]), "--pairs", str((d["tmp"] / "p.csv").write_text("reference,generated\na.png,zz.jpg\n")
                                                                and d["tmp"] / "p.csv")], "zz.jpg"),
    (lambda d: [str(d["refs"]), str(d["gen"]), "--pairs", str((d["tmp"] / "p.csv").write_text("x,y\n1,2\n") and d["tmp"] / "p.csv")],
     "reference,generated"),
    (lambda d: [str(d["ref"]), str(d["gen"]), "--threshold", "nan"], "--threshold"),
    (lambda d: [str(d["ref"]), str(d["gen"]), "--threshold", "inf"], "--threshold"),
    (lambda d: [str(d["ref"]), str(d["gen"]), "--threshold", "1.5"], "--threshold 1.5"),
    (lambda d: [str(d["ref"]), str(d["gen"]), "--num-workers", "-1"], "--num-workers"),
    (lambda d: [str(d["ref"]), str(d["gen"]), "--csv", str(d["ref"] / "s.csv")], "--csv"),  # its folder is a file
    (lambda d: [str(d["ref"]), str(d["gen"]), "--reference-set"], "at least 2 photos"),
    (lambda d: [str(d["ref"]), str(d["gen"]), "--model", "arcface=/nonexistent/w.pth"], "arcface"),
    (lambda d: [str(d["ref"]), str(d["gen"]), "--model", "someone/not-cached"], "--model"),  # a Hub id, offline
])
def test_bad_input_is_one_line_and_writes_nothing(case, message, data, capsys):
    argv = case(data)
    extra = [] if "--csv" in argv else ["--csv", str(data["tmp"] / "out.csv")]
    code, out, err = _run(["score", *argv, *SCORE_TINY, *extra, "--json", str(data["tmp"] / "out.json")], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and lines and lines[-1].startswith("styleid score: error: ") and message in lines[-1], err
    assert "Traceback" not in err and not out
    assert not (data["tmp"] / "out.csv").exists() and not (data["tmp"] / "out.json").exists()


def test_a_face_baseline_equals_its_eval_embedder(data):
    """`--model arcface=random` (a random IR-SE50): the same embeddings `styleid eval --baseline` computes."""
    from styleid_guidance.eval.models import build_embedder, parse_baseline
    from styleid_guidance.score import score

    res = score(data["ref"], data["gen"], models=["arcface=random"], crop="center", device="cpu", cache_dir=None)
    emb = build_embedder(parse_baseline("arcface=random"), "center", torch.device("cpu"), 8, "retinaface", None)
    files = sorted(data["gen"].rglob("*.jpg"))
    with torch.inference_mode():
        z_ref, z_gen = emb([data["ref"]]).double(), emb(files).double()
    assert res.models[0].name == "ArcFace"
    np.testing.assert_allclose(res.models[0].similarity, (z_gen @ z_ref[0]).numpy(), atol=1e-5)


def test_an_input_error_names_the_file_not_the_model_flag(data, capsys):
    bad = data["tmp"] / "damaged.safetensors"
    bad.write_bytes(b"garbage")
    code, _, err = _run(["score", str(bad), str(data["gen"]), *SCORE_TINY], capsys)
    assert code == 2 and err.strip().splitlines()[-1].startswith(f"styleid score: error: {bad}: not an embeddings file"), err
