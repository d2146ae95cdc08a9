"""The demo in a real headless Chromium: start `python -m styleid_guidance.demo --profile tiny`, run every tab once,
and give every tab a bad upload first (a text file, an empty file, a 20000 x 20000 PNG header): one plain sentence
each, never Gradio's "Could not preprocess…" or a server path.

Needs the Debian packages `chromium` and `chromium-driver` (and selenium). Without them the test is
skipped locally but FAILS under CI (env CI set): CI must run it. Screenshots go to test-artifacts/.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
FACES = ROOT / "examples" / "faces"
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
CHROMEDRIVER = shutil.which("chromedriver")
CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,2000")
RUN_TIMEOUT = 300  # s per tab on two busy cores


def _require_browser() -> None:
    missing = [name for name, found in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)) if not found]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install selenium)")
    if missing:
        message = f"browser test needs {', '.join(missing)} (apt-get install -y chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(message + ": CI must run the browser test")
        pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory):
    _require_browser()
    port = _free_port()
    log_path = tmp_path_factory.mktemp("demo") / "demo.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "styleid_guidance.demo", "--profile", "tiny", "--port", str(port)],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"demo exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"demo did not come up on {url}:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert "Traceback" not in log_path.read_text(), log_path.read_text()[-3000:]


@pytest.fixture(scope="module")
def browser(demo_url):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    profile_dir = tempfile.mkdtemp(prefix="styleid-chromium-")
    options.add_argument(f"--user-data-dir={profile_dir}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        driver.get(demo_url)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile_dir, ignore_errors=True)


def _wait(driver, condition, timeout=RUN_TIMEOUT):
    """Wait for `condition(driver)` to be truthy; on time-out fail with a screenshot and the page text."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.5).until(lambda d: condition(d))
    except TimeoutException:
        shot = ROOT / "test-artifacts" / "demo_timeout.png"
        shot.parent.mkdir(exist_ok=True)
        driver.save_screenshot(str(shot))
        body = driver.find_element("tag name", "body").text
        pytest.fail(f"waited {timeout} s in vain (screenshot: {shot}); page text ends with:\n{body[-1500:]}")


def _by_css(driver, selector):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def _text(driver, selector) -> str:
    found = _by_css(driver, selector)
    return found[0].text if found else ""


def _open_tab(driver, name: str) -> None:
    from selenium.webdriver.common.by import By

    tab = _wait(driver, lambda d: next(iter(d.find_elements(By.XPATH, f"//button[@role='tab' and normalize-space()='{name}']")), None), 30)
    tab.click()


def _upload(driver, elem_id: str, paths) -> None:
    field = _wait(driver, lambda d: next(iter(_by_css(d, f"#{elem_id} input[type=file]")), None), 30)
    field.send_keys("\n".join(str(p) for p in paths))


def _click(driver, elem_id: str) -> None:
    button = _wait(driver, lambda d: next(iter(_by_css(d, f"#{elem_id}")), None), 30)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", button)
    button.click()


def _image_loaded(driver, elem_id: str) -> bool:
    return bool(driver.execute_script(
        "const im = document.querySelector(arguments[0]); return im && im.complete && im.naturalWidth > 0;", f"#{elem_id} img"))


def _table_rows(driver, elem_id: str) -> list[list[str]]:
    return driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])]"
        ".map(r => [...r.querySelectorAll('[role=gridcell]')].map(c => c.innerText.trim()));", f"#{elem_id} [role=row][data-index]")


def _numbers(row: list[str]) -> list[float]:
    out = []
    for cell in row:
        try:
            out.append(float(cell))
        except ValueError:
            pass
    return out


def _clear(driver, elem_id: str) -> None:
    """Empty a gr.File (it hides its file input while it holds a file)."""
    _by_css(driver, f"#{elem_id} button[aria-label='Clear']")[0].click()
    _wait(driver, lambda d: _by_css(d, f"#{elem_id} input[type=file]"), 30)


def _toasts(driver) -> str:
    return "\n".join(t.text for t in _by_css(driver, ".toast-body, [data-testid='toast-body']"))


def _close_toasts(driver) -> None:
    for button in _by_css(driver, ".toast-body .toast-close, [data-testid='toast-close']"):
        driver.execute_script("arguments[0].click();", button)


def _assert_clean_page(driver, bad_dir: Path) -> None:
    text = driver.find_element("tag name", "body").text
    for leak in ("Could not preprocess", "Traceback", str(bad_dir), "/tmp/gradio", "/tmp/"):
        assert leak not in text, f"{leak!r} on the page:\n{text[-1500:]}"


@pytest.fixture(scope="module")
def bad_uploads(tmp_path_factory) -> dict[str, Path]:
    import struct
    import zlib

    folder = tmp_path_factory.mktemp("bad")

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    (folder / "notes.png").write_text("not an image")
    (folder / "empty.png").write_bytes(b"")
    (folder / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0))
                                      + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))
    return {p.stem: p for p in folder.iterdir()}


def _shot(driver, artifacts_dir, name: str, elem_id: str | None = None) -> None:
    if elem_id:
        driver.execute_script("document.querySelector(arguments[0]).scrollIntoView({block: 'start'});", f"#{elem_id}")
    driver.save_screenshot(os.path.join(artifacts_dir, name))


def test_page_shows_tiny_banner_and_tabs(browser, artifacts_dir):
    banner = _wait(browser, lambda d: _text(d, "#profile-banner"), 60)
    assert "Tiny profile" in banner and "NOT meaningful" in banner
    for name in ("Verify", "Stylize", "JoJoGAN"):
        assert browser.find_elements("xpath", f"//button[@role='tab' and normalize-space()='{name}']"), name
    _by_css(browser, "#models-accordion button")[0].click()
    status = _wait(browser, lambda d: "InfiniteYou" in (t := _text(d, "#model-status")) and t, 30)
    for part in ("StyleID", "ArcFace", "CLIP", "IP-Adapter", "InstantID", "InfiniteYou", "JoJoGAN"):
        assert f"{part}\n✓ ready" in status or f"{part} ✓ ready" in status, status
    _shot(browser, artifacts_dir, "demo_home.png")


def test_verify_tab(browser, artifacts_dir, bad_uploads):
    _open_tab(browser, "Verify")
    paths = [FACES / "astronaut.jpg", FACES / "astronaut_painted.jpg", FACES / "astronaut_sketch.jpg"]
    # an empty file in the batch: left out on its own, named, the rest shown as thumbnails and compared
    _upload(browser, "verify-files", [paths[0], bad_uploads["empty"], *paths[1:]])
    _wait(browser, lambda d: _text(d, "#verify-files").count(".jpg") == len(paths), 60)  # names render as stem + suffix
    note = _wait(browser, lambda d: "empty.png" in (t := _text(d, "#verify-upload-note")) and t, 60)
    assert "image 2 (empty.png): the file is empty" in note, note
    thumbnails = "return [...document.querySelectorAll('#verify-gallery img')].filter(im => im.complete && im.naturalWidth > 0).length;"
    _wait(browser, lambda d: d.execute_script(thumbnails) == len(paths), 60)
    _assert_clean_page(browser, bad_uploads["empty"].parent)
    _click(browser, "verify-run")
    status = _wait(browser, lambda d: ("Compared with" in (t := _text(d, "#verify-status")) or "⚠️" in t) and t)
    assert "Compared with the reference" in status and "astronaut.jpg" in status, status
    assert "Left out image 2 (empty.png)" in status, status
    _wait(browser, lambda d: _image_loaded(d, "verify-chart"), 60)
    rows = _wait(browser, lambda d: len(r := _table_rows(d, "verify-table")) == 2 and r, 30)
    for row, path in zip(rows, paths[1:]):
        assert row[0] == path.name
        sims = _numbers(row)
        assert len(sims) == 3 and all(-1.0 <= s <= 1.0 for s in sims), row
        assert sum(v in ("same", "different") for v in row) == 3, row
    _shot(browser, artifacts_dir, "demo_verify.png", "verify-status")


def test_stylize_tab(browser, artifacts_dir, tmp_path, bad_uploads):
    _open_tab(browser, "Stylize")
    # not an image: one sentence as soon as it arrives, and the same one on a click
    _upload(browser, "stylize-face", [bad_uploads["notes"]])
    toast = _wait(browser, lambda d: "notes.png" in (t := _toasts(d)) and t, 60)
    assert "face photo (notes.png): not a readable image; upload a PNG, JPEG or WebP file" in toast, toast
    _click(browser, "stylize-run")
    status = _wait(browser, lambda d: "⚠️" in (t := _text(d, "#stylize-status")) and t)
    assert status == "⚠️ face photo (notes.png): not a readable image; upload a PNG, JPEG or WebP file", status
    assert not _image_loaded(browser, "stylize-face-preview")
    _assert_clean_page(browser, bad_uploads["notes"].parent)
    _shot(browser, artifacts_dir, "demo_stylize_bad_upload.png")
    _close_toasts(browser)

    # a picture without a face: a message in the tab, no crash
    _clear(browser, "stylize-face")
    noise = tmp_path / "no_face.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8)).save(noise)
    _upload(browser, "stylize-face", [noise])
    _wait(browser, lambda d: _image_loaded(d, "stylize-face-preview"), 60)
    _click(browser, "stylize-run")
    status = _wait(browser, lambda d: "no face" in (t := _text(d, "#stylize-status")) and t)
    assert "no face found" in status, status
    _shot(browser, artifacts_dir, "demo_stylize_no_face.png", "stylize-status")

    _clear(browser, "stylize-face")
    _upload(browser, "stylize-face", [FACES / "astronaut.jpg"])
    _wait(browser, lambda d: _image_loaded(d, "stylize-face-preview"), 60)
    _click(browser, "stylize-run")
    status = _wait(browser, lambda d: "Prompt:" in (t := _text(d, "#stylize-status")) and t)
    assert "Pixar" in status and "seed 0" in status, status
    _wait(browser, lambda d: _image_loaded(d, "stylize-grid"), 60)
    rows = _wait(browser, lambda d: len(r := _table_rows(d, "stylize-table")) == 9 and r, 30)
    assert {r[0] for r in rows} == {"IP-Adapter", "InstantID", "InfiniteYou"}
    assert {r[1] for r in rows} == {"unguided", "ArcFace-guided", "StyleID-guided"}
    assert all(len(_numbers(r)) == 2 for r in rows), rows
    _shot(browser, artifacts_dir, "demo_stylize.png", "stylize-status")


def test_jojogan_tab(browser, artifacts_dir, bad_uploads):
    _open_tab(browser, "JoJoGAN")
    # a decompression bomb (a 20000 x 20000 header): refused from the header, in one sentence
    _close_toasts(browser)
    _upload(browser, "jojogan-style", [bad_uploads["huge"]])
    toast = _wait(browser, lambda d: "huge.png" in (t := _toasts(d)) and t, 60)
    assert "style reference (huge.png): too many pixels; resize it to at most 4096 px per side" in toast, toast
    _assert_clean_page(browser, bad_uploads["huge"].parent)
    _shot(browser, artifacts_dir, "demo_jojogan_bad_upload.png")
    _close_toasts(browser)
    _clear(browser, "jojogan-style")

    _upload(browser, "jojogan-style", [FACES / "astronaut_painted.jpg"])
    _upload(browser, "jojogan-face", [FACES / "astronaut.jpg"])
    _wait(browser, lambda d: _image_loaded(d, "jojogan-style-preview") and _image_loaded(d, "jojogan-face-preview"), 60)
    _click(browser, "jojogan-run")
    status = _wait(browser, lambda d: ("iterations" in (t := _text(d, "#jojogan-status")) or "⚠️" in t) and t)
    assert "iterations, identity weight" in status, status
    _wait(browser, lambda d: _image_loaded(d, "jojogan-grid"), 60)
    rows = _wait(browser, lambda d: len(r := _table_rows(d, "jojogan-table")) == 2 and r, 30)
    assert [r[0] for r in rows] == ["ArcFace-trained", "StyleID-trained"]
    assert all(len(_numbers(r)) == 2 and r[-1].startswith("trained") for r in rows), rows
    _shot(browser, artifacts_dir, "demo_jojogan.png", "jojogan-status")
