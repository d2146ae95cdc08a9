"""`styleid study` in a real headless Chromium: a participant answers, the server is SIGKILLed mid-study,
restarted, and the participant resumes where they stopped; the CSV holds every answer given, once.

Same browser requirements and skip/fail policy as test_demo_browser.py (whose generic helpers it uses).
Screenshots go to test-artifacts/.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from chromium import by_css, chrome, free_port, serve, stop, text, wait
from test_study import make_study_data

from styleid_guidance.perception.study.store import read_responses

pytestmark = pytest.mark.browser

TOTAL = 8  # 3 trials + 1 catch trial per task, two tasks


def _serve(data: Path, results: Path, port: int, log_path: Path) -> subprocess.Popen:
    return serve([sys.executable, "-m", "styleid_guidance", "study", str(data), "--output", str(results), "--task", "both",
                  "--trials", "3", "--repeats", "1", "--port", str(port)], port, log_path, {"HF_HUB_OFFLINE": "1"},
                 timeout=120, what="study server")


@pytest.fixture
def browser():
    with chrome() as driver:
        yield driver


def _visible(driver, elem_id: str) -> bool:
    return any(e.is_displayed() for e in by_css(driver, f"#{elem_id}"))


def _images_loaded(driver, ids) -> bool:
    return all(driver.execute_script(
        "const im = document.querySelector(arguments[0]); return !!im && im.complete && im.naturalWidth > 0;",
        f"#{i} img") for i in ids)


def _enter(driver, participant: str) -> None:
    field = wait(driver, lambda d: next(iter(e for e in by_css(d, "#study-participant input, #study-participant textarea")
                                              if e.is_displayed()), None), 60)
    field.clear()
    field.send_keys(participant)
    by_css(driver, "#study-start")[0].click()


def _question(driver) -> int:
    progress = text(driver, "#study-progress")
    return int(progress.split()[1]) if progress.startswith("Question") else 0


def _answer(driver, number: int, button: str) -> str:
    """Wait for question `number`, check its images, click; returns the task it was."""
    wait(driver, lambda d: _question(d) == number, 60)
    task = "2afc" if "Which stylized picture" in text(driver, "#study-instruction") else "verify"
    shown = ["study-source", "study-a", "study-b"] if task == "2afc" else ["study-source", "study-a"]
    wait(driver, lambda d: _images_loaded(d, shown), 60)
    assert _visible(driver, "study-b") == (task == "2afc")
    for src in driver.execute_script("return [...document.querySelectorAll('#study-trial img')].map(i => i.src)"):
        assert "p3" not in src and "pixar" not in src and "_0" not in src.rsplit("/", 1)[-1], src  # no data-set names
    by_css(driver, f"#study-choose-{button}")[0].click()
    return task


def test_study_survives_a_server_kill_and_resumes(browser, tmp_path, artifacts_dir):
    data = make_study_data(tmp_path / "data")
    results, log_path, port = tmp_path / "results", tmp_path / "study.log", free_port()
    url = f"http://127.0.0.1:{port}/"
    proc = _serve(data, results, port, log_path)
    try:
        with urllib.request.urlopen(url + "gradio_api/info", timeout=10) as response:  # no callable API
            info = json.loads(response.read())
        assert not info.get("named_endpoints") and not info.get("unnamed_endpoints"), info
        browser.get(url)
        _enter(browser, "bad id!")
        status = wait(browser, lambda d: "⚠️" in (t := text(d, "#study-status")) and t, 60)
        assert "participant id is 1 to 64 letters" in status, status
        _enter(browser, "tester1")
        for number, button in ((1, "a"), (2, "b"), (3, "a")):
            assert _answer(browser, number, button) == "2afc"
        wait(browser, lambda d: _question(d) == 4, 60)
        browser.save_screenshot(os.path.join(artifacts_dir, "study_2afc.png"))
        assert len(read_responses(results / "responses.csv")) == 3  # fsync'ed before question 4 was shown
        proc.kill()  # SIGKILL: no clean-up of any kind
        proc.wait(30)

        proc = _serve(data, results, port, log_path)
        browser.get(url)
        _enter(browser, "tester1")
        tasks = [_answer(browser, number, button) for number, button in zip(range(4, TOTAL + 1), "baabb")]
        assert tasks == ["2afc", "verify", "verify", "verify", "verify"]
        thanks = wait(browser, lambda d: "Thank you" in (t := text(d, "#study-thanks")) and t, 60)
        assert f"all {TOTAL} questions" in thanks and "tester1" in thanks
        browser.save_screenshot(os.path.join(artifacts_dir, "study_done.png"))
    finally:
        stop(proc)
    rows = read_responses(results / "responses.csv")
    assert [int(r["trial"]) for r in rows] == list(range(TOTAL)) and {r["participant"] for r in rows} == {"tester1"}
    assert [r["choice"] for r in rows] == ["left", "right", "left", "right", "same", "same", "different", "different"]
    assert all(float(r["rt_ms"]) > 0 for r in rows)
    assert sum(r["catch"] == "1" for r in rows) == 2
    log_text = log_path.read_text()
    assert "Traceback" not in log_text, log_text[-3000:]
