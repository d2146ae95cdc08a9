"""`styleid generate` across processes: SIGKILL mid-run then resume, and a 2-process accelerate split, both
byte-equal to one uninterrupted run."""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from styleid_guidance.cli import run
from styleid_guidance.perception.manifest import MANIFEST, PARTS_DIR, read_records

from test_generate import images, make_faces
from support import REPO, free_port, subprocess_env

# 2 identities × 2 styles × 3 levels = 12 images: long enough to be killed in the middle
ARGS = ["--tiny", "--methods", "infiniteyou", "--styles", "pixar", "orc", "--levels", "2,3,5", "--steps", "3", "--no-progress"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, astronaut):
    root = tmp_path_factory.mktemp("procs")
    faces = make_faces(root / "faces", astronaut)
    reference = root / "reference"
    assert run(["generate", str(faces), "-o", str(reference), *ARGS]) == 0  # uninterrupted, one process
    return faces, reference


def _part_lines(out: Path) -> int:
    return sum(p.read_text().count("\n") for p in (out / PARTS_DIR).glob("*.jsonl")) if (out / PARTS_DIR).is_dir() else 0


def test_sigkill_mid_run_then_resume_is_byte_equal(setup, tmp_path):
    faces, reference = setup
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "styleid_guidance", "generate", str(faces), "-o", str(out), *ARGS]
    proc = subprocess.Popen(cmd, env=subprocess_env(), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while _part_lines(out) < 5 and proc.poll() is None and time.monotonic() < deadline:  # 2 sources + 3 images done
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]  # killed, not finished
    proc.stderr.close()
    done = read_records(out)
    assert 5 <= len(done) < len(images(reference))  # really mid-run
    assert all((out / path).is_file() for path in done)  # the manifest never lists an image that is not there
    assert run(["generate", str(faces), "-o", str(out), *ARGS]) == 0  # resumed (in this process: one start fewer)
    assert images(out) == images(reference)
    assert (out / MANIFEST).read_text() == (reference / MANIFEST).read_text()  # no duplicates, no gaps
    assert not list(out.rglob("*.tmp"))


def test_two_processes_split_the_work_and_match_one(setup, tmp_path):
    faces, reference = setup
    out = tmp_path / "ddp"
    accelerate = Path(sys.executable).with_name("accelerate")
    cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "--main_process_port", str(free_port()),
           "-m", "styleid_guidance", "generate", str(faces), "-o", str(out), *ARGS]
    done = subprocess.run(cmd, env={**subprocess_env(), "ACCELERATE_USE_CPU": "1"}, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    made = [int(n) for n in re.findall(r"process (?:main|worker): made (\d+) image", done.stderr)]
    assert len(made) == 2 and all(n > 0 for n in made) and sum(made) == 12, done.stderr[-2000:]  # each image once
    assert images(out) == images(reference)
    records = [json.loads(line) for line in (out / MANIFEST).read_text().splitlines()]
    assert len({r["path"] for r in records}) == len(records) == 14
    assert (out / MANIFEST).read_text() == (reference / MANIFEST).read_text()
    assert done.stderr.count("planned image(s) on disk") == 1  # one summary, from the main process
