"""Screenshot a workflow running in ComfyUI's own frontend (for the README), with headless Chromium.

    python examples/comfyui/screenshot.py --url http://127.0.0.1:8188 examples/comfyui/score_batch.json -o docs/images/x.png

The ComfyUI at --url must have the StyleID pack installed and the workflow's input images in its input/ folder.
The workflow is loaded through the frontend's `app.loadGraphData`, queued with `app.queuePrompt`, and the page is
captured once the queue is empty again.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("workflow", type=Path, help="a UI-format workflow (.json)")
    p.add_argument("--url", default="http://127.0.0.1:8188")
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--timeout", type=float, default=300)
    args = p.parse_args(argv)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--window-size=2400,1350"):
        opts.add_argument(flag)
    binary = next((b for b in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if b), None)
    if binary:
        opts.binary_location = binary
    import urllib.request

    # a fresh ComfyUI greets first-time users with a template gallery: mark the tutorial as seen
    req = urllib.request.Request(args.url.rstrip("/") + "/settings/Comfy.TutorialCompleted", data=b"true", method="POST")
    urllib.request.urlopen(req, timeout=30).close()
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    try:
        driver.get(args.url)
        deadline = time.monotonic() + args.timeout
        while not driver.execute_script("return !!(window.app && window.app.graph)"):
            if time.monotonic() > deadline:
                raise TimeoutError("the ComfyUI frontend did not start")
            time.sleep(0.5)
        driver.execute_script("return window.app.loadGraphData(arguments[0])", json.loads(args.workflow.read_text()))
        time.sleep(2)
        driver.execute_script("window.app.queuePrompt(0, 1)")
        time.sleep(2)
        while driver.execute_async_script(
                "const done = arguments[0]; fetch('/queue').then(r => r.json())"
                ".then(q => done(q.queue_running.length + q.queue_pending.length > 0))"):
            if time.monotonic() > deadline:
                raise TimeoutError("the workflow did not finish")
            time.sleep(1)
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys

        ActionChains(driver).send_keys(Keys.ESCAPE).perform()  # any remaining dialog
        # fit the graph, but not below the zoom where LiteGraph stops drawing text
        driver.execute_script("try { window.app.extensionManager.command.execute('Comfy.Canvas.FitView') } catch (e) {}"
                              "const ds = window.app.canvas.ds; if (ds.scale < 0.7) { ds.scale = 0.7; ds.offset = [20, 20]; }"
                              "window.app.canvas.setDirty(true, true);")
        time.sleep(3)  # previews and widgets redraw
        args.output.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(args.output))
    finally:
        driver.quit()
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
