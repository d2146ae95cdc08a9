"""`styleid psychometric`: recovery of known thresholds from simulated 2AFC observers (with interval
coverage), censored cells, the output set, and one-line errors for every class of bad trials file."""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest
from PIL import Image

from styleid_guidance.cli import run
from styleid_guidance.errors import StyleIDError
from styleid_guidance.perception.psychometric.fit import INSTALL_HINT, FitOptions, fit_cell
from styleid_guidance.perception.psychometric.simulate import Observer, simulate_trials, write_trials_csv
from styleid_guidance.perception.psychometric.trials import CellCounts, Trial, cell_counts, read_trials

if not os.environ.get("CI"):  # CI installs the dev extra, which has psignifit: there a missing one must fail
    pytest.importorskip("psignifit")

OBSERVERS = (
    Observer("ip_adapter", "pixar", threshold=2.6, spread=0.5),
    Observer("ip_adapter", "line", threshold=3.6, spread=0.7, lapse=0.03),
    Observer("instantid", "pixar", threshold=4.5, spread=0.6),
    Observer("infiniteyou", "orc", threshold=5.4, spread=0.8, lapse=0.01),
)
CELL_KEYS = {"method", "style", "threshold", "threshold_ci", "levels_kept", "observed", "n", "censored", "reason",
             "extrapolated", "n_per_level", "fitted", "lapse", "width", "unreachable_mass", "plot", "warnings"}


def _cells(rows):
    return cell_counts([Trial(**r) for r in rows])


def test_recovers_known_thresholds_with_calibrated_intervals():
    """5 simulated studies × 4 cells (30 participants, 60 answers per level): the threshold is close to the truth,
    the 95 % credible interval covers it in most fits, and the kept levels are mostly the true ones. (Over 100
    fits of this kind the bias is ≈ 0.02 levels and the coverage 0.93-0.97; 20 fits allow ±0.3 and 0.8.)"""
    truth = {(o.method, o.style): o for o in OBSERVERS}
    errors, covered, kept_right = [], [], []
    for rep in range(5):
        for counts in _cells(simulate_trials(OBSERVERS, participants=30, trials_per_level=2, seed=1000 + rep)):
            fit = fit_cell(counts)
            obs = truth[(counts.method, counts.style)]
            assert fit.censored is None, fit.reason
            errors.append(fit.threshold - obs.threshold)
            covered.append(fit.threshold_ci[0] <= obs.threshold <= fit.threshold_ci[1])
            kept_right.append(fit.levels_kept == [lvl for lvl in range(1, 8) if obs.rate(lvl) >= 0.9])
            assert fit.seconds >= 0  # recorded for the report; its speed is not a unit-test matter
            assert fit.threshold_ci[0] < fit.threshold_ci[1] and 0 <= fit.lapse <= 0.05  # the MAP keeps to the lapse bound
            assert all(fit.fitted[a] >= fit.fitted[a + 1] for a in range(1, 7))  # recognition falls with the level
    errors = np.array(errors)
    assert abs(errors.mean()) < 0.3 and np.abs(errors).mean() < 0.45, errors
    assert np.mean(covered) >= 0.8, covered
    assert np.mean(kept_right) >= 0.6, kept_right


def test_all_correct_is_censored_above_and_keeps_every_level():
    fit = fit_cell(CellCounts("m", "s", {lvl: (30, 30) for lvl in range(1, 8)}))
    doc = fit.to_json()
    assert doc["threshold"] is None and doc["threshold_ci"] is None and doc["censored"] == "above_range"
    assert "above level 7" in doc["reason"] and doc["extrapolated"] > 7
    assert doc["levels_kept"] == [1, 2, 3, 4, 5, 6, 7]


def test_chance_everywhere_keeps_nothing():
    fit = fit_cell(CellCounts("m", "s", {lvl: (15, 30) for lvl in range(1, 8)}))
    assert fit.threshold is None and fit.censored == "below_range" and fit.levels_kept == []


def test_a_curve_below_the_target_is_not_reached():
    """With a lapse bound above 1 - target, the fitted ceiling can sit under the target (psignifit's
    threshold() would raise): reported as not reached, nothing kept."""
    counts = CellCounts("m", "s", {lvl: (k, 40) for lvl, k in zip(range(1, 8), (32, 32, 31, 30, 26, 22, 20))})
    fit = fit_cell(counts, FitOptions(max_lapse=0.3))
    assert fit.censored == "not_reached" and fit.threshold is None and fit.levels_kept == [] and fit.lapse > 0.1


def test_too_few_levels_and_levels_above_the_tested_ones():
    assert fit_cell(CellCounts("m", "s", {1: (20, 20), 7: (10, 20)})).censored == "too_few_levels"
    fit = fit_cell(CellCounts("m", "s", {1: (30, 30), 2: (30, 30), 3: (29, 30)}))  # all high, only levels 1..3 tested
    assert fit.censored == "above_range" and fit.levels_kept == [1, 2, 3]  # never a level that was not tested


def test_fixed_zero_lapse_option():
    rows = simulate_trials(OBSERVERS[:1], participants=10, trials_per_level=2, seed=5)
    fit = fit_cell(_cells(rows)[0], FitOptions(max_lapse=0.0))
    assert fit.lapse == 0.0 and fit.threshold == pytest.approx(OBSERVERS[0].threshold, abs=0.8)


def test_cli_writes_the_json_and_plots_as_one_set(tmp_path, capsys):
    rows = simulate_trials(OBSERVERS[:2], participants=8, trials_per_level=2, seed=3)
    rows += [{"participant": "x", "method": "infiniteyou", "style": "anime", "level": lvl, "correct": 1}
             for lvl in range(1, 8) for _ in range(10)]
    trials = write_trials_csv(rows, tmp_path / "trials.csv")
    out = tmp_path / "calib"
    assert run(["psychometric", str(trials), "--output", str(out), "--target", "0.85", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "infiniteyou/anime: censored (above_range), keep levels [1, 2, 3, 4, 5, 6, 7]" in printed
    doc = json.loads((out / "psychometric.json").read_text())
    assert doc["target"] == 0.85 and [(c["method"], c["style"]) for c in doc["cells"]] == [
        ("infiniteyou", "anime"), ("ip_adapter", "line"), ("ip_adapter", "pixar")]
    for cell in doc["cells"]:
        assert set(cell) == CELL_KEYS
        assert set(cell["observed"]) == {str(lvl) for lvl in range(1, 8)} and cell["n"] == sum(cell["n_per_level"].values())
        assert all(1 <= lvl <= 7 for lvl in cell["levels_kept"])
        with Image.open(out / cell["plot"]) as im:
            assert im.format == "PNG" and im.size[0] > 300
    normal = doc["cells"][1]
    assert normal["threshold_ci"][0] < normal["threshold"] < normal["threshold_ci"][1]
    assert normal["levels_kept"] == [lvl for lvl in range(1, 8) if normal["fitted"][str(lvl)] >= 0.85]
    with Image.open(out / doc["overview"]) as im:
        assert im.size[0] > 600
    # a re-run replaces the set whole: no plot of a cell that is gone survives
    write_trials_csv(rows[: len(rows) // 2], trials)
    (out / "stale.png").write_bytes(b"old")
    assert run(["psychometric", str(trials), "--output", str(out), "--no-progress"]) == 0
    assert {p.name for p in out.iterdir()} == {"psychometric.json", "psychometric.png", "ip_adapter__pixar.png",
                                               "ip_adapter__line.png"}  # the anime cell and stale.png are gone


GOOD_ROW = "p1,ip_adapter,pixar,3,1,1200"
HEADER = "participant,method,style,level,correct,rt_ms"


@pytest.mark.parametrize("content, message", [
    (b"", "the file is empty"),
    (b"\n\n", "the file is empty"),
    (HEADER.encode() + b"\n", "no trials after the header line"),
    (b"participant,method,level,correct\np,m,1,1\n", ":1: missing column(s) style"),
    (f"{HEADER}\n{GOOD_ROW}\np1,ip_adapter,pixar,8,1,900\n".encode(), ":3: level must be an integer from 1 to 7, got '8'"),
    (f"{HEADER}\np1,ip_adapter,pixar,0,1,900\n".encode(), ":2: level must be an integer from 1 to 7, got '0'"),
    (f"{HEADER}\np1,ip_adapter,pixar,2.5,1,900\n".encode(), ":2: level must be an integer"),
    (f"{HEADER}\np1,ip_adapter,pixar,high,1,900\n".encode(), ":2: level must be an integer"),
    (f"{HEADER}\np1,ip_adapter,pixar,3,2,900\n".encode(), ":2: correct must be 0 or 1, got '2'"),
    (f"{HEADER}\np1,ip_adapter,pixar,3,yes,900\n".encode(), ":2: correct must be 0 or 1, got 'yes'"),
    (f"{HEADER}\np1,ip_adapter,pixar,3,1,-5\n".encode(), ":2: rt_ms must be a number"),
    (f"{HEADER}\np1,ip_adapter,pixar,3,1\n".encode(), ":2: 5 fields, the header has 6"),
    (f"{HEADER}\n,ip_adapter,pixar,3,1,900\n".encode(), ":2: empty participant"),
    (f"{HEADER}\n{GOOD_ROW}\n".encode("utf-16"), "UTF-16 (byte-order mark); save it as UTF-8"),
    (f"{HEADER}\n{GOOD_ROW}\np\xe9,ip_adapter,pixar,3,1,900\n".encode("latin-1"), ":3: not UTF-8 text"),
    (f"{HEADER}\n{GOOD_ROW}\x00\n".encode(), ":2: NUL byte"),
])
def test_bad_trials_are_one_line_errors_naming_the_row(tmp_path, capsys, content, message):
    path = tmp_path / "trials.csv"
    path.write_bytes(content)
    with pytest.raises(StyleIDError, match=None) as err:
        read_trials(path)
    assert message in str(err.value) and str(path) in str(err.value)
    assert run(["psychometric", str(path), "--output", str(tmp_path / "out"), "--no-progress"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("styleid psychometric: error: ") and message in lines[0]
    assert not (tmp_path / "out").exists()


def test_utf8_bom_quoted_fields_and_blank_lines_are_fine(tmp_path):
    path = tmp_path / "trials.csv"
    path.write_bytes(("\ufeff" + f"{HEADER}\n\n\"p 1\",\"ip_adapter\",pixar,3,1,\n{GOOD_ROW}\n").encode("utf-8"))
    trials = read_trials(path)
    assert [(t.participant, t.level, t.correct, t.rt_ms) for t in trials] == [("p 1", 3, 1, None), ("p1", 3, 1, 1200.0)]


def test_output_and_option_errors_come_before_any_fit(tmp_path, capsys):
    trials = write_trials_csv(simulate_trials(OBSERVERS[:1], participants=2, seed=0), tmp_path / "t.csv")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    for argv, message in (
        (["--output", str(mine)], "folder is not empty and holds no psychometric.json"),
        (["--output", str(trials)], "exists and is not a folder"),
        (["--output", str(tmp_path / "o"), "--target", "0.4"], "--target must be between 0.5"),
        (["--output", str(tmp_path / "o"), "--max-lapse", "0.7"], "--max-lapse must be from 0"),
        (["--output", str(tmp_path / "o"), "--ci", "1.5"], "--ci must be between 0 and 1"),
    ):
        assert run(["psychometric", str(trials), *argv, "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert (mine / "thesis.tex").read_text() == "precious"


def test_missing_psignifit_says_how_to_install_and_names_the_licence(monkeypatch):
    monkeypatch.setitem(sys.modules, "psignifit", None)  # import psignifit → ImportError
    with pytest.raises(StyleIDError) as err:
        fit_cell(CellCounts("m", "s", {lvl: (20, 30) for lvl in range(1, 8)}))
    assert str(err.value) == INSTALL_HINT
    assert 'pip install "styleid-guidance[psychometric]"' in INSTALL_HINT and "GPL-3.0" in INSTALL_HINT
