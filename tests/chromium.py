"""Shared by the browser tests: headless Debian Chromium driven by selenium, and a local server to point it at.

With CI set a missing browser fails the test instead of skipping it (`.ci/run` installs chromium and
chromium-driver)."""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import pytest
from support import free_port  # noqa: F401  (the browser tests' servers listen on it)

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
CHROMEDRIVER = shutil.which("chromedriver")
CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,2000")


def require_browser() -> None:
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


def serve(command: Sequence[str], port: int, log_path: Path, env: dict[str, str], timeout: float = 180,
          what: str = "server") -> subprocess.Popen:
    """Start `command` (appending to log_path) and return once http://127.0.0.1:port/ answers 200."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(list(command), cwd=ROOT, env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", **env},
                                stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                if response.status == 200:
                    return proc
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{what} did not come up on port {port}:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.5)


@contextlib.contextmanager
def tiny_demo(folder: Path) -> Iterator[str]:
    """`python -m styleid_guidance.demo --profile tiny` on a free 127.0.0.1 port (log in `folder`): its URL.
    On the way out the server stops, and its log must show no traceback."""
    port = free_port()
    log_path = folder / "demo.log"
    env = {"HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    proc = serve([sys.executable, "-m", "styleid_guidance.demo", "--profile", "tiny", "--port", str(port)], port, log_path,
                 env, what="demo")
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        stop(proc)
    assert "Traceback" not in log_path.read_text(), log_path.read_text()[-3000:]


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def chrome() -> Iterator[Any]:
    """A headless Chromium with a throw-away profile."""
    require_browser()
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
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile_dir, ignore_errors=True)


def wait(driver: Any, condition: Callable[[Any], Any], timeout: float, shot: str = "browser_timeout.png") -> Any:
    """Wait for `condition(driver)` to be truthy; on time-out fail with a screenshot and the page text. An element
    that Gradio re-renders (or a toast that closes) while the condition reads it is read again at the next poll."""
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.5,
                             ignored_exceptions=(StaleElementReferenceException,)).until(lambda d: condition(d))
    except TimeoutException:
        path = ROOT / "test-artifacts" / shot
        path.parent.mkdir(exist_ok=True)
        driver.save_screenshot(str(path))
        body = driver.find_element("tag name", "body").text
        pytest.fail(f"waited {timeout} s in vain (screenshot: {path}); page text ends with:\n{body[-1500:]}")


def by_css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def text(driver: Any, selector: str) -> str:
    found = by_css(driver, selector)
    return found[0].text if found else ""
