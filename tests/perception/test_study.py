"""`styleid study` without a browser: the data contract, balanced seeded plans, durable answers that
survive a torn write, resume, and the export's cleaning rules. (The browser test is test_study_browser.py.)"""
from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from styleid_guidance.cli import run
from styleid_guidance.errors import StyleIDError
from styleid_guidance.perception.study.data import load_dataset
from styleid_guidance.perception.study.plan import make_plan
from styleid_guidance.perception.study.session import Study, StudySettings
from styleid_guidance.perception.study.store import FIELDS, open_store, read_responses

IDS = ("ada", "ben", "cyd")
CELLS = (("ip_adapter", "pixar", 1), ("ip_adapter", "pixar", 4), ("instantid", "line", 2))


def make_study_data(root: Path, pairs: bool = True) -> Path:
    """A hand-made StyleBench-S folder: 3 identities, 3 (method, style, level) cells, 2 images each,
    and a balanced pairs.csv. Each identity has its own colour; PNG text metadata carries the answer
    (the app must strip it)."""
    rng = np.random.default_rng(0)
    colours = {"ada": (200, 40, 40), "ben": (40, 160, 40), "cyd": (40, 40, 200)}
    (root / "p3").mkdir(parents=True)
    lines, rows = [], []
    for identity in IDS:
        Image.new("RGB", (64, 64), colours[identity]).save(root / "p3" / f"{identity}.png")
        lines.append(json.dumps({"path": f"p3/{identity}.png", "kind": "source", "id": identity}))  # as generate writes
    for i, (method, style, level) in enumerate(CELLS):
        folder = root / method / style
        folder.mkdir(parents=True, exist_ok=True)
        for identity in IDS:
            for idx in range(2):
                noise = rng.integers(0, 60, (64, 64, 3))
                pixels = np.clip(np.array(colours[identity]) + noise, 0, 255).astype(np.uint8)
                info = PngImagePlugin.PngInfo()
                info.add_text("identity", identity)
                name = f"{identity}_{i * 2 + idx}.png"
                Image.fromarray(pixels).save(folder / name, pnginfo=info)
                rel = f"{method}/{style}/{name}"
                lines.append(json.dumps({"path": rel, "kind": "stylized", "id": identity, "method": method, "style": style,
                                         "level": level, "seed": 7, "source": f"p3/{identity}.png"}))
                other = IDS[(IDS.index(identity) + 1) % len(IDS)]
                rows.append([f"p3/{identity}.png", rel, 1, "test", method, style, level])
                rows.append([f"p3/{other}.png", rel, 0, "test", method, style, level])
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    if pairs:
        with open(root / "pairs.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["source", "stylized", "label", "split", "method", "style", "strength"])
            writer.writerows(rows)
    return root


@pytest.fixture
def data(tmp_path):
    return make_study_data(tmp_path / "data")


def _study(data: Path, results: Path, **kw) -> Study:
    settings = StudySettings(**{"tasks": ("2afc", "verify"), "trials": 12, "repeats": 2, "seed": 0, **kw})
    dataset = load_dataset(data)
    return Study(dataset, open_store(results, settings.as_record(dataset)), settings)


def test_plan_is_seeded_per_participant_and_balanced(data):
    dataset = load_dataset(data)
    a1 = make_plan(dataset, "alice", ("2afc", "verify"), 12, 2, seed=0)
    assert a1 == make_plan(dataset, "alice", ("2afc", "verify"), 12, 2, seed=0)  # a restart rebuilds the same list
    assert a1 != make_plan(dataset, "bob", ("2afc", "verify"), 12, 2, seed=0)
    assert a1 != make_plan(dataset, "alice", ("2afc", "verify"), 12, 2, seed=1)
    assert [t.index for t in a1] == list(range(28)) and [t.task for t in a1] == ["2afc"] * 14 + ["verify"] * 14
    first = [t for t in a1 if not t.is_catch]
    two_afc = [t for t in first if t.task == "2afc"]
    assert Counter((t.method, t.style, t.level) for t in two_afc) == {(m, s, str(lv)): 4 for m, s, lv in CELLS}
    assert Counter(t.answer for t in two_afc) == {"left": 6, "right": 6}
    for t in two_afc:  # the source's own stylization is on the answer's side, the foil is someone else
        source_id = Path(t.source).stem
        target, foil = t.options if t.answer == "left" else t.options[::-1]
        assert Path(target).stem.split("_")[0] == source_id != Path(foil).stem.split("_")[0]
        assert Path(target).parent == Path(foil).parent
    verify = [t for t in first if t.task == "verify"]
    assert Counter(t.answer for t in verify) == {"same": 6, "different": 6}
    for task in ("2afc", "verify"):
        catches = [t for t in a1 if t.task == task and t.is_catch]
        assert len(catches) == 2
        for c in catches:
            original = a1[c.repeat_of]
            assert not original.is_catch and original.pair == c.pair and c.index - original.index >= 3
            if task == "2afc":  # sides swapped, same stimulus
                assert c.options == original.options[::-1] and c.answer != original.answer


def test_answers_are_durable_deduplicated_and_resume(data, tmp_path):
    clock = iter(np.arange(0, 1000, 0.75))
    study = _study(data, tmp_path / "results")
    study.clock = lambda: float(next(clock))
    trial = study.next_trial("alice")
    assert trial.index == 0
    shown = study.shown()
    assert study.answer("alice", 0, "left", shown) is True
    assert study.answer("alice", 0, "right", shown) is False  # a double click or second tab: first answer stands
    for _ in range(3):
        t = study.next_trial("alice")
        study.answer("alice", t.index, "right", study.shown())
    rows = read_responses(tmp_path / "results" / "responses.csv")
    assert [r["trial"] for r in rows] == ["0", "1", "2", "3"] and rows[0]["choice"] == "left"
    assert float(rows[0]["rt_ms"]) == pytest.approx(750.0) and list(rows[0]) == list(FIELDS)
    assert rows[0]["correct"] == str(int(study.plan("alice")[0].answer == "left"))
    study.store.close()

    # a kill mid-write leaves a torn line: it is cut off, nothing acknowledged is lost, alice resumes at 4
    with open(tmp_path / "results" / "responses.csv", "a") as f:
        f.write("alice,2afc,ip_adapter,pix")
    again = _study(data, tmp_path / "results")
    assert again.next_trial("alice").index == 4 and again.progress("alice") == (4, 28)
    assert again.next_trial("bob").index == 0
    assert (tmp_path / "results" / "responses.csv").read_text().endswith("\n")
    with pytest.raises(StyleIDError, match="another `styleid study` is serving"):
        _study(data, tmp_path / "results")
    again.store.close()
    with pytest.raises(StyleIDError, match="other settings \\(trials\\)"):
        _study(data, tmp_path / "results", trials=10)


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "manifest.jsonl").unlink(), "no manifest.jsonl"),
    (lambda d: (d / "manifest.jsonl").write_text('{"path": "x.png"}\n'), "manifest.jsonl:1: missing id, method, style, level"),
    (lambda d: (d / "manifest.jsonl").write_text('not json\n'), "manifest.jsonl:1: not a JSON object"),
    (lambda d: (d / "manifest.jsonl").write_text(
        '{"path": "ip_adapter/pixar/ada_0.png", "id": "ada", "method": "m", "style": "s", "level": 9}\n'), "level must be an integer"),
    (lambda d: (d / "manifest.jsonl").write_text(
        '{"path": "../../etc/passwd", "id": "ada", "method": "m", "style": "s", "level": 1}\n'), "is not a file inside"),
    (lambda d: (d / "p3" / "ben.png").unlink(), "source photo p3/ben.png is missing"),
    (lambda d: (d / "manifest.jsonl").write_text('{"path": "p3/ada.png", "kind": "source", "id": "ada"}\n'), "no stylized images listed"),
    (lambda d: (d / "pairs.csv").write_text("source,stylized,label\np3/ada.png,nope.png,1\n"), "pairs.csv:2: stylized image 'nope.png' not found"),
])
def test_bad_data_is_one_line_error(data, damage, message):
    damage(data)
    with pytest.raises(StyleIDError, match=message):
        load_dataset(data)


def test_results_folder_must_be_new_or_a_study(data, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(StyleIDError, match="not empty and not a study results folder"):
        _study(data, other)


def _answer_all(study: Study, participant: str, policy) -> None:
    while (t := study.next_trial(participant)) is not None:
        study.answer(participant, t.index, policy(t), study.shown())


def test_export_cleans_by_latency_and_consistency(data, tmp_path, capsys):
    study = _study(data, tmp_path / "results")
    times = iter(np.arange(0, 10000, 1.0))
    study.clock = lambda: float(next(times))  # 1000 ms per answer
    _answer_all(study, "good", lambda t: t.answer)  # always right: consistent
    flip = {"2afc": {"left": "right", "right": "left"}, "verify": {"same": "different", "different": "same"}}
    _answer_all(study, "flaky", lambda t: flip[t.task][t.answer] if t.is_catch else t.answer)  # repeats disagree
    study.clock = lambda: 0.0
    _answer_all(study, "clicker", lambda t: "left" if t.task == "2afc" else "same")  # 0 ms: too fast
    study.store.close()

    assert run(["study", str(data), "--output", str(tmp_path / "results"), "--export"]) == 0
    out = tmp_path / "results" / "export"
    report = json.loads((out / "cleaning.json").read_text())
    kept = {p: [i["kept"] for i in infos] for p, infos in report["participants"].items()}
    assert kept == {"good": [True, True], "flaky": [False, False], "clicker": [False, False]}
    assert "consistency 0.00" in report["participants"]["flaky"][0]["reason"]
    assert "faster than 300 ms" in report["participants"]["clicker"][0]["reason"]
    with open(out / "trials.csv", newline="") as f:
        trials = list(csv.DictReader(f))
    assert list(trials[0]) == ["participant", "method", "style", "level", "correct", "rt_ms"]
    assert len(trials) == 12 and {t["participant"] for t in trials} == {"good"} and {t["correct"] for t in trials} == {"1"}
    with open(out / "pairs_human.csv", newline="") as f:
        pairs = list(csv.DictReader(f))
    assert len(pairs) == 36 and "human" in pairs[0]  # every row of DATA/pairs.csv, in order
    answered = [p for p in pairs if p["human_n"] != "0"]
    assert len(answered) == 12 and all(float(p["human"]) == float(p["label"]) for p in answered)
    assert all((out / p["source"]).is_file() and (out / p["stylized"]).is_file() for p in pairs)  # relative to the new CSV
    assert "styleid_guidance" not in capsys.readouterr().err

    # the export feeds styleid eval's pair reader (paths and the human column)
    from styleid_guidance.eval import read_pairs

    humans = [p.human for p in read_pairs(out / "pairs_human.csv") if p.human not in (None, "")]
    assert len(humans) == 12 and {float(h) for h in humans} == {0.0, 1.0}


def test_export_and_study_errors_are_one_line(data, tmp_path, capsys):
    assert run(["study", str(data), "--output", str(tmp_path / "none"), "--export"]) == 2
    assert "no study.json" in capsys.readouterr().err
    assert run(["study", str(data), "--output", str(tmp_path / "r"), "--repeats", "12", "--trials", "12"]) == 2
    assert "--repeats must be from 0 to --trials - 1" in capsys.readouterr().err
    assert run(["study", str(data), "--output", str(tmp_path / "r"), "--export", "--min-consistency", "2"]) == 2
    assert "--min-consistency must be from 0 to 1" in capsys.readouterr().err
    assert run(["study", str(tmp_path / "missing"), "--output", str(tmp_path / "r")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_no_pairs_csv_draws_balanced_pairs_from_the_manifest(tmp_path):
    data = make_study_data(tmp_path / "data", pairs=False)
    plan = make_plan(load_dataset(data), "p", ("verify",), 12, 0, seed=3)
    assert Counter(t.answer for t in plan) == {"same": 6, "different": 6}
    for t in plan:
        same = Path(t.source).stem == Path(t.options[0]).stem.split("_")[0]
        assert same == (t.answer == "same")


def test_stimulus_drops_metadata_and_paths_never_reach_the_page(data, tmp_path):
    from styleid_guidance.perception.study.app import build_app, stimulus

    image = stimulus(data / "ip_adapter" / "pixar" / "ada_0.png")
    assert image.info == {} and image.size == (64, 64)
    study = _study(data, tmp_path / "results")
    app = build_app(study)
    config = json.dumps(app.get_config_file(), default=str)
    assert str(data) not in config and "p3/" not in config and "pixar/" not in config and "responses.csv" not in config
    study.store.close()


def test_export_without_pairs_csv_lists_the_pairs_shown(tmp_path):
    from styleid_guidance.perception.study.export import export

    data = make_study_data(tmp_path / "data", pairs=False)
    study = _study(data, tmp_path / "results", tasks=("verify",), trials=6, repeats=1)
    times = iter(np.arange(0, 1000, 2.0))
    study.clock = lambda: float(next(times))
    _answer_all(study, "p1", lambda t: t.answer)
    study.store.close()
    report = export(data, tmp_path / "results")
    assert report["files"] == {"pairs": "pairs_human.csv"}  # no 2AFC answers: no trials.csv
    with open(tmp_path / "results" / "export" / "pairs_human.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and all(r["human"] == ("1.0" if r["label"] == "1" else "0.0") and r["human_n"] == "1" for r in rows)
