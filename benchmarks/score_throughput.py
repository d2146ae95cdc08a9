"""`styleid score` on a folder against `styleid verify` called once per pair: images per second, side by side.

Generates N JPEGs (jittered crops of skimage's astronaut, 256 px) and one reference photo, then times:

  * score, one process: `styleid score REF GEN/` (cold: --no-cache; warm: a second run on the content cache);
  * score in-process: `styleid_guidance.cli.run(["score", ...])`, model load included (cold, and warm cache);
  * verify per pair, one process each: `styleid verify REF IMG` for the first --verify-sample images (process start
    and model load are part of what a per-pair loop pays), extrapolated to images/s;
  * verify per pair in-process: `run(["verify", REF, IMG])` for every image (model load each call, no process start).

    python benchmarks/score_throughput.py                      # test-tiny, CPU, 200 images
    python benchmarks/score_throughput.py --model kwanY/styleid --device cuda --crop face
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path




def make_images(folder: Path, n: int, size: int = 256) -> Path:
    import numpy as np
    from PIL import Image
    from skimage import data

    img = Image.fromarray(data.astronaut())
    rng = np.random.default_rng(0)
    (folder / "gen").mkdir(parents=True)
    for i in range(n):
        x, y, s = int(rng.integers(40, 140)), int(rng.integers(0, 80)), int(rng.integers(300, 380))
        crop = img.crop((x, y, x + s, y + s)).resize((size, size)).rotate(float(rng.uniform(-10, 10)))
        crop.save(folder / "gen" / f"{i:04d}.jpg", quality=90)
    ref = folder / "ref.jpg"
    img.crop((90, 20, 420, 350)).resize((size, size)).save(ref, quality=95)
    return ref


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=200, help="generated images (default: 200)")
    p.add_argument("--model", default="test-tiny")
    p.add_argument("--crop", default="center")
    p.add_argument("--device", default="cpu")
    p.add_argument("--verify-sample", type=int, default=5, help="per-pair verify processes to time (default: 5)")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    common = ["--model", args.model, "--crop", args.crop, "--device", args.device]
    cli = [sys.executable, "-m", "styleid_guidance"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ref = make_images(root, args.n)
        files = sorted((root / "gen").glob("*.jpg"))
        env = {**os.environ, "STYLEID_CACHE": str(root / "cache")}
        quiet = dict(check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)

        score_cold = timed(lambda: subprocess.run([*cli, "score", str(ref), str(root / "gen"), *common, "--no-progress", "--no-cache"], **quiet))
        subprocess.run([*cli, "score", str(ref), str(root / "gen"), *common, "--no-progress"], **quiet)  # fills the cache
        score_warm = timed(lambda: subprocess.run([*cli, "score", str(ref), str(root / "gen"), *common, "--no-progress"], **quiet))
        sample = files[: args.verify_sample]
        verify_proc = timed(lambda: [subprocess.run([*cli, "verify", str(ref), str(f), *common], **quiet) for f in sample])

        os.environ["STYLEID_CACHE"] = str(root / "cache-inproc")
        from styleid_guidance.cli import run

        def quiet_run(argv: list[str]) -> None:
            with open(os.devnull, "w") as null:
                old = sys.stdout, sys.stderr
                sys.stdout = sys.stderr = null
                try:
                    assert run(argv) == 0
                finally:
                    sys.stdout, sys.stderr = old

        quiet_run(["verify", str(ref), str(files[0]), *common])  # imports and first-call costs, not per pair
        score_inproc = timed(lambda: quiet_run(["score", str(ref), str(root / "gen"), *common, "--no-progress", "--no-cache"]))
        quiet_run(["score", str(ref), str(root / "gen"), *common, "--no-progress"])  # fills the in-process run's cache
        score_inproc_warm = timed(lambda: quiet_run(["score", str(ref), str(root / "gen"), *common, "--no-progress"]))
        verify_inproc = timed(lambda: [quiet_run(["verify", str(ref), str(f), *common]) for f in files])

    from styleid_guidance.devices import cpu_name

    n = args.n
    print(f"CPU: {cpu_name()} ({os.cpu_count()} logical cores), torch threads {__import__('torch').get_num_threads()}; "
          f"model {args.model}, crop {args.crop}, device {args.device}; {n} JPEGs of 256 px")
    rows = [
        ("score, 1 process, cold (--no-cache)", n / score_cold, score_cold),
        ("score, 1 process, warm content cache", n / score_warm, score_warm),
        ("score, in-process (model load incl.)", n / score_inproc, score_inproc),
        ("score, in-process, warm content cache", n / score_inproc_warm, score_inproc_warm),
        (f"verify per pair, 1 process each ({len(sample)} timed)", len(sample) / verify_proc, verify_proc / len(sample) * n),
        ("verify per pair, in-process", n / verify_inproc, verify_inproc),
    ]
    print(f"{'':48s} {'images/s':>10s} {'s for ' + str(n):>10s}")
    for name, rate, total in rows:
        print(f"{name:48s} {rate:10.1f} {total:10.1f}")
    print(f"score vs verify per pair (process each): {rows[0][1] / rows[4][1]:.0f}x; in-process: {rows[2][1] / rows[5][1]:.1f}x")


if __name__ == "__main__":
    main()
