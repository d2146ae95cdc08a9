"""`styleid score --people` and `--layout multiid-bench` on group images composed from skimage's astronaut,
examples/faces and insightface's six-person group photo t1.jpg (offline: test-tiny encoder, mtcnn detector).

Per-person scores equal `styleid verify` on the same face crops; the swap, merge and duplicate cases come from a
face pasted twice and from boxes placed the wrong way round; bad input is one line, exit 2, nothing written."""
from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import insightface
import numpy as np
import pytest
from PIL import Image

from styleid_guidance.cli import run
from styleid_guidance.people.faces import detect_all_faces, face_crop
from support import REPO

TINY = ["--model", "test-tiny", "--detector", "mtcnn", "--precision", "fp32", "--device", "cpu"]
EXAMPLES = REPO / "examples" / "faces"
T1 = Path(insightface.__file__).parent / "data" / "images" / "t1.jpg"


def _square(img: Image.Image, box: tuple[int, int, int, int], size: int = 160) -> Image.Image:
    return img.crop(box).resize((size, size), Image.BICUBIC)


def _row(*faces: Image.Image) -> Image.Image:
    out = Image.new("RGB", (170 * len(faces), 170), (128, 128, 128))
    for k, f in enumerate(faces):
        out.paste(f, (5 + 170 * k, 5))
    return out


@pytest.fixture(scope="module")
def faces(astronaut):
    t1 = Image.open(T1).convert("RGB")
    return {"ann": _square(astronaut, (125, 20, 325, 220)), "bob": _square(t1, (440, 230, 595, 385)),
            "cat": _square(t1, (30, 250, 190, 410)), "dan": _square(t1, (880, 50, 1040, 210)),
            "sketch": _square(Image.open(EXAMPLES / "astronaut_sketch.jpg").convert("RGB"), (94, 18, 244, 168)),
            "t1": t1.resize((640, 443), Image.BICUBIC)}


@pytest.fixture(scope="module")
def data(tmp_path_factory, faces):
    root = tmp_path_factory.mktemp("people")
    refs, gen = root / "refs", root / "gen"
    (refs / "dan").mkdir(parents=True)
    gen.mkdir()
    for name in ("ann", "bob", "cat"):
        faces[name].save(refs / f"{name}.png")
    faces["dan"].save(refs / "dan" / "1.png")
    faces["dan"].transpose(Image.FLIP_LEFT_RIGHT).save(refs / "dan" / "2.png")  # two photos: their mean embedding
    _row(faces["ann"], faces["bob"]).save(gen / "pair.png")
    _row(faces["ann"], faces["ann"]).save(gen / "twice.png")  # a face pasted twice
    _row(faces["bob"], faces["dan"], faces["sketch"]).save(gen / "three.png")
    faces["t1"].save(gen / "t1.jpg")
    return {"root": root, "refs": refs, "gen": gen}


def _run(argv, capsys):
    code = run(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _people(data, capsys, tag, *extra, gen=None):
    out = data["root"] / f"{tag}.json"
    code, stdout, err = _run(["score", str(data["refs"]), str(gen or data["gen"]), "--people", *TINY, "--json", str(out),
                              "--csv", str(data["root"] / f"{tag}.csv"), "--no-progress", *extra], capsys)
    assert code == 0, err
    return json.loads(out.read_text()), stdout


@pytest.fixture(scope="module")
def strict(data):
    """Threshold 0.997: with the random tiny encoder only the same pixels clear it."""
    import contextlib
    import io

    out = data["root"] / "strict.json"
    with contextlib.redirect_stdout(io.StringIO()) as stdout:
        code = run(["score", str(data["refs"]), str(data["gen"]), "--people", *TINY, "--threshold", "0.997",
                    "--json", str(out), "--csv", str(data["root"] / "strict.csv"), "--no-progress"])
    assert code == 0
    return json.loads(out.read_text()), stdout.getvalue()


def _image(result, name):
    return next(im for im in result["images"] if im["image"] == name)


def _verify(ref: Path, crops: list[Path], capsys) -> list[float]:
    code, out, err = _run(["verify", str(ref), *map(str, crops), *TINY, "--json", "-"], capsys)
    assert code == 0, err
    data = json.loads(out)
    return [d["similarity"] for d in (data if isinstance(data, list) else [data])]


def test_every_face_of_the_six_person_group_photo_is_detected_and_reported(strict):
    result, stdout = strict
    t1 = _image(result, "t1.jpg")
    assert len(t1["faces"]) == 6  # insightface's group photo shows six people
    xs = [b[0] for b in t1["faces"]]
    assert xs == sorted(xs)  # left to right
    m = t1["models"]["StyleID"]
    assert m["faces"] == 6 and len(m["similarity"]) == 6 and len(m["similarity"][0]) == 4
    assert len(m["unknown_faces"]) == 6 - len(m["found"])
    line = stdout.strip().splitlines()[-1]
    s = result["models"]["StyleID"]
    assert line.startswith(f"StyleID: {s['similarity']:.3f} ± ") and f"found={s['found']}, missing={s['missing']}" in line
    assert s["images"] == 4 and s["people"] == 4 and s["found"] + s["missing"] == 16 and line.endswith(" @0.997)")


def test_people_scores_equal_verify_on_the_same_face_crops(strict, data, tmp_path, capsys):
    result, _ = strict
    for image in ("pair.png", "three.png"):
        path = data["gen"] / image
        crops = []
        for k, face in enumerate(detect_all_faces(path, "mtcnn", device="cpu")):
            crops.append(tmp_path / f"{Path(image).stem}_{k}.png")
            face_crop(path, face).save(crops[-1])
        sim = np.array(_image(result, image)["models"]["StyleID"]["similarity"])
        assert sim.shape == (len(crops), 4)
        for p, name in enumerate(("ann", "bob", "cat")):  # REF is sorted: ann, bob, cat, dan/
            np.testing.assert_allclose(sim[:, p], _verify(data["refs"] / f"{name}.png", crops, capsys), atol=2e-6)
    pair = _image(result, "pair.png")["models"]["StyleID"]
    assert pair["people"]["ann"]["face"] == 0  # the pasted pixels clear 0.997
    assert pair["people"]["ann"]["similarity"] == pytest.approx(sim_of(result, "pair.png", 0, 0))
    rows = list(csv.DictReader((data["root"] / "strict.csv").read_text().splitlines()))
    assert len(rows) == 4 * 4 and {r["status"] for r in rows} <= {"found", "missing"}
    ann_row = next(r for r in rows if r["image"] == "pair.png" and r["person"] == "ann")
    assert float(ann_row["similarity"]) == pytest.approx(pair["people"]["ann"]["similarity"], abs=1e-6)


def sim_of(result, image, face, person):
    return _image(result, image)["models"]["StyleID"]["similarity"][face][person]


def test_a_face_pasted_twice_is_a_duplicate_then_a_swap(strict, data, capsys):
    result, _ = strict
    twice = _image(result, "twice.png")["models"]["StyleID"]
    assert twice["similarity"][1][0] >= 0.997, "precondition: the same pixels pasted again clear the threshold"
    assert twice["found"] == ["ann"] and twice["unknown_faces"] == [1] and "bob" in twice["missing"]
    assert twice["duplicates"] == [{"face": 1, "of": "ann"}] and twice["swaps"] == []
    # a low threshold gives the copy to someone else (the Hungarian assignment is one-to-one), and it resembles ann
    # more than them: a swap
    loose, _ = _people(data, capsys, "loose", "--threshold", "0.9", "--margin", "0.001")
    twice = _image(loose, "twice.png")["models"]["StyleID"]
    sim = np.array(twice["similarity"])
    copy = 1 - twice["people"]["ann"]["face"]
    other = next(n for n, p in twice["people"].items() if p["face"] == copy)
    assert other != "ann" and sim[copy, 0] > twice["people"][other]["similarity"] + 0.001
    assert [{k: s[k] for k in ("face", "assigned", "closer")} for s in twice["swaps"]] == [
        {"face": copy, "assigned": other, "closer": "ann"}]
    for im in loose["images"]:  # merges: exactly the faces at or above the threshold for two people or more
        m = im["models"]["StyleID"]
        expected = [f for f, row in enumerate(m["similarity"]) if sum(v >= 0.9 for v in row) > 1]
        assert [x["face"] for x in m["merges"]] == expected
    assert loose["models"]["StyleID"]["merged"] > 0


def test_match_position_reads_people_json_and_flags_swapped_boxes(data, tmp_path, capsys):
    gen = tmp_path / "gen"
    gen.mkdir()
    shutil.copy(data["gen"] / "pair.png", gen / "pair.png")
    left, right = [0, 0, 170, 170], [170, 0, 340, 170]
    (gen / "people.json").write_text(json.dumps({"pair.png": {"ann": right, "bob": left}}))  # the wrong way round
    result, stdout = _people(data, capsys, "pos", "--match", "position", "--threshold", "0.9", "--margin", "0.001", gen=gen)
    m = _image(result, "pair.png")["models"]["StyleID"]
    assert m["people"]["ann"]["face"] == 1 and m["people"]["bob"]["face"] == 0
    assert sorted((s["assigned"], s["closer"]) for s in m["swaps"]) == [("ann", "bob"), ("bob", "ann")]
    assert result["match"] == "position" and "swapped=2" in stdout
    (gen / "people.json").write_text(json.dumps({"pair.png": {"ann": left, "cat": right}}))
    result, _ = _people(data, capsys, "pos2", "--match", "position", "--threshold", "0.9", gen=gen)
    m = _image(result, "pair.png")["models"]["StyleID"]
    assert m["people"]["ann"]["face"] == 0 and m["people"]["cat"]["face"] == 1 and m["missing"] == ["bob", "dan"]


def test_score_group_in_memory_gives_the_cli_numbers(strict, data):
    """The function the ComfyUI nodes and the demo call: PIL images and a loaded encoder, no files."""
    from styleid_guidance.encoder.model import StyleIDEncoder
    from styleid_guidance.people.group import score_group

    result, _ = strict
    encoder = StyleIDEncoder.from_pretrained("test-tiny", device="cpu").eval()
    refs = {n: Image.open(data["refs"] / f"{n}.png") for n in ("ann", "bob", "cat")}
    refs["dan"] = [Image.open(p) for p in sorted((data["refs"] / "dan").iterdir())]
    pair = Image.open(data["gen"] / "pair.png")
    g = score_group(pair, refs, encoder, threshold=0.997, detector="mtcnn")
    np.testing.assert_allclose(g.result.similarity, _image(result, "pair.png")["models"]["StyleID"]["similarity"], atol=2e-6)
    assert len(g.faces) == 2 and g.result.found == ["ann"]
    placed = score_group(pair, refs, encoder, threshold=0.9, detector="mtcnn", boxes={"bob": (0, 0, 170, 170)})
    assert placed.result.person("bob").face == 0 and placed.result.missing == ["ann", "cat", "dan"]


def test_more_people_than_faces_is_a_result(data, tmp_path, capsys):
    one = tmp_path / "one.png"
    Image.open(data["refs"] / "ann.png").save(one)
    result, _ = _people(data, capsys, "one", gen=one)
    m = result["images"][0]["models"]["StyleID"]
    assert m["faces"] == 1 and len(m["missing"]) >= 3 and result["models"]["StyleID"]["images"] == 1


def _bad(argv, capsys, *written):
    code, _, err = _run(argv, capsys)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not any(Path(w).exists() for w in written)
    return err


def test_bad_input_is_one_line_exit_2_nothing_written(data, faces, tmp_path, capsys):
    out = tmp_path / "o.json"
    args = lambda ref, gen, *x: ["score", str(ref), str(gen), "--people", *TINY, "--json", str(out), *x]
    gen = data["gen"] / "pair.png"

    def refs(**photos):
        folder = tmp_path / f"refs{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        for name, img in photos.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            img.save(folder / name)
        return folder

    blank = Image.new("RGB", (160, 160), (90, 120, 150))
    err = _bad(args(refs(**{"ann.png": faces["ann"], "eve.png": blank}), gen), capsys, out)
    assert "eve.png: no face found" in err
    err = _bad(args(refs(**{"ann.png": faces["ann"], "duo.png": _row(faces["ann"], faces["bob"])}), gen), capsys, out)
    assert "duo.png: 2 faces found" in err and "crop it" in err
    err = _bad(args(refs(**{"ann.png": faces["ann"], "ann.jpg": faces["ann"]}), gen), capsys, out)
    assert "'ann' is given twice" in err
    err = _bad(args(refs(**{"ann.png": faces["ann"], "ann/1.png": faces["ann"]}), gen), capsys, out)
    assert "'ann' is given twice" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no reference photos" in _bad(args(empty, gen), capsys, out)
    pos = tmp_path / "pos"
    pos.mkdir()
    shutil.copy(gen, pos / "pair.png")
    assert "people.json: not found" in _bad(args(data["refs"], pos, "--match", "position"), capsys, out)
    (pos / "people.json").write_text(json.dumps({"pair.png": {"ann": [0, 0, 170, 170], "bob": [150, 0, 340, 170]}}))
    assert "the boxes of ann and bob overlap" in _bad(args(data["refs"], pos, "--match", "position"), capsys, out)
    (pos / "people.json").write_text(json.dumps({"pair.png": {"zed": [0, 0, 170, 170]}}))
    assert "'zed' is not a person of REF" in _bad(args(data["refs"], pos, "--match", "position"), capsys, out)
    assert "--margin" in _bad(args(data["refs"], gen, "--margin", "-1"), capsys, out)
    assert "--pairs does not apply" in _bad(args(data["refs"], gen, "--pairs", "x.csv"), capsys, out)
    assert "add --people" in _bad(["score", str(data["refs"]), str(gen), "--match", "position"], capsys, out)
    assert "GEN is missing" in _bad(["score", str(data["refs"])], capsys, out)


def _bench(root: Path, faces) -> Path:
    for case, out, ori in (("id1", _row(faces["ann"], faces["bob"]), _row(faces["bob"].rotate(5), faces["sketch"])),
                           ("id2", _row(faces["ann"]), _row(faces["sketch"], faces["bob"]))):
        (root / case).mkdir(parents=True)
        out.save(root / case / "out.jpg", quality=95)
        ori.save(root / case / "ori.jpg", quality=95)
        faces["ann"].save(root / case / "ref_1.jpg", quality=95)
        faces["bob"].save(root / case / "ref_2.jpg", quality=95)
        (root / case / "meta.json").write_text(json.dumps({"prompt": f"two people, {case}"}))
    return root


def test_multiid_bench_layout_gives_sim_ref_sim_gt_and_copy_paste(faces, tmp_path, capsys):
    root = _bench(tmp_path / "bench", faces)
    out = tmp_path / "bench.json"
    code, stdout, err = _run(["score", "--layout", "multiid-bench", str(root), *TINY, "--model", "clip=test-tiny",
                              "--json", str(out), "--csv", str(tmp_path / "bench.csv"), "--no-progress"], capsys)
    assert code == 0, err
    result = json.loads(out.read_text())
    lines = stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["StyleID", "CLIP"]
    assert "(cases=2, people=4, missing=1)" in lines[0]
    id1 = result["cases"][0]
    assert id1["prompt"] == "two people, id1" and result["cases"][1]["models"]["StyleID"]["ref_2"]["sim_ref"] is None
    # Sim(Ref), Sim(GT) and CP from `styleid verify` on the same crops (StyleID = test-tiny)
    crops = {}
    for kind in ("out", "ori"):
        path = root / "id1" / f"{kind}.jpg"
        for k, face in enumerate(detect_all_faces(path, "mtcnn", device="cpu")):
            crops[kind, k] = tmp_path / f"{kind}{k}.png"
            face_crop(path, face).save(crops[kind, k])
    ann = id1["models"]["StyleID"]["ref_1"]
    s_gr = _verify(root / "id1" / "ref_1.jpg", [crops["out", 0]], capsys)[0]
    assert ann["sim_ref"] == pytest.approx(s_gr, abs=2e-6)
    s_tr = _verify(root / "id1" / "ref_1.jpg", [crops["ori", 0], crops["ori", 1]], capsys)
    gt = int(np.argmax(s_tr))  # ann's ground-truth face: the sketch (right); the ori.jpg Hungarian agrees here
    s_gt = _verify(crops["out", 0], [crops["ori", gt]], capsys)[0]
    assert ann["sim_gt"] == pytest.approx(s_gt, abs=2e-6)
    expected = (math.acos(min(s_gt, 1)) - math.acos(min(s_gr, 1))) / math.acos(min(s_tr[gt], 1))
    assert ann["copy_paste"] == pytest.approx(expected, abs=1e-4)
    rows = list(csv.DictReader((tmp_path / "bench.csv").read_text().splitlines()))
    assert len(rows) == 2 * 2 * 2 and set(rows[0]) == {"model", "case", "person", "sim_ref", "sim_gt", "copy_paste"}


def test_multiid_bench_bad_layout_is_one_line(tmp_path, faces, capsys):
    root = _bench(tmp_path / "bench", faces)
    (root / "id2" / "ref_1.jpg").rename(root / "id2" / "ref_3.jpg")
    assert "ref_2.jpg without ref_1.jpg" in _bad(["score", "--layout", "multiid-bench", str(root), *TINY], capsys)
    assert "reads one folder" in _bad(["score", "--layout", "multiid-bench", str(root), str(root), *TINY], capsys)


def test_multiid_bench_counts_a_reference_without_a_face(tmp_path, faces, capsys):
    root = _bench(tmp_path / "bench", faces)
    shutil.rmtree(root / "id2")
    Image.new("RGB", (160, 160), (90, 120, 150)).save(root / "id1" / "ref_2.jpg")
    code, stdout, err = _run(["score", "--layout", "multiid-bench", str(root), *TINY, "--no-progress"], capsys)
    assert code == 0, err
    assert stdout.strip().endswith("(cases=1, people=2, missing=0, no_face_refs=1)")


def test_one_layout_flag_for_score_and_train(tmp_path, capsys):
    """`--layout` means the input folder's layout everywhere: score reads the benchmark layouts, train the training
    data ones, and each refuses the other's in one line."""
    from styleid_guidance.errors import StyleIDError
    from styleid_guidance.train.config import TrainConfig

    assert run(["score", "--layout", "stylebench", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "training-data layout" in err and "multiid-bench" in err
    with pytest.raises(StyleIDError, match="layout"):
        TrainConfig(data=str(tmp_path), layout="multiid-bench")


@pytest.mark.parametrize("flag", [["--no-face", "skip"], ["--num-workers", "2"], ["--cache-dir", "c"], ["--no-cache"]])
def test_flags_that_do_not_apply_to_people_are_refused(tmp_path, capsys, flag):
    assert run(["score", str(tmp_path), str(tmp_path), "--people", *flag]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{flag[0]}" in err and "does not apply to --people" in err


def test_videos_in_gen_are_refused_not_left_out(tmp_path, capsys):
    refs, gen = tmp_path / "refs", tmp_path / "gen"
    refs.mkdir(), gen.mkdir()
    shutil.copy(REPO / "examples" / "faces" / "astronaut.jpg", refs / "ann.jpg")
    shutil.copy(REPO / "examples" / "faces" / "astronaut.jpg", gen / "still.jpg")
    (gen / "clip.mp4").write_bytes(b"not decoded: refused by name")
    assert run(["score", str(refs), str(gen), "--people", "--model", "test-tiny", "--detector", "mtcnn"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "clip.mp4" in err and "without --people" in err
