"""`accelerate launch -m styleid_guidance score ...` on 2 CPU processes: the videos and images are split between
the processes, each embedded once, and the report equals one process's, number for number."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from styleid_guidance.cli import run
from support import REPO, free_port, subprocess_env
from video_support import moving_frames, write_video

ARGS = ["--model", "test-tiny", "--crop", "center", "--device", "cpu", "--no-progress", "--frames", "5"]


def test_two_processes_split_the_videos_and_match_one(tmp_path, astronaut, camera, monkeypatch):
    gen = tmp_path / "gen"
    gen.mkdir()
    for k, base in enumerate([astronaut, camera, astronaut.rotate(15), camera.rotate(-10), astronaut.rotate(5)]):
        write_video(gen / f"v{k}.mp4", moving_frames(base, 8 + k))
    astronaut.crop((120, 20, 380, 280)).resize((96, 96)).save(gen / "still.png")
    astronaut.crop((110, 10, 390, 290)).resize((96, 96)).save(tmp_path / "ref.png")
    monkeypatch.setenv("STYLEID_CACHE", str(tmp_path / "cache1"))
    assert run(["score", str(tmp_path / "ref.png"), str(gen), *ARGS, "--json", str(tmp_path / "one.json")]) == 0
    accelerate = Path(sys.executable).with_name("accelerate")
    cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "--main_process_port", str(free_port()),
           "-m", "styleid_guidance", "score", str(tmp_path / "ref.png"), str(gen), *ARGS, "--json", str(tmp_path / "two.json"),
           "--csv", str(tmp_path / "two.csv")]
    env = subprocess_env(ACCELERATE_USE_CPU="1", STYLEID_CACHE=str(tmp_path / "cache2"))
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("StyleID:") == 1  # one report, from the main process
    shares = sorted(done.stderr.count(f"process {i}/2: 3 of the 6 generated items") for i in (1, 2))
    assert shares == [1, 1], done.stderr[-2000:]  # each process embedded half of GEN
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert two == one  # every number, every frame index and time
    assert len(one["models"]["StyleID"]["videos"]) == 5
    # both processes' embeddings reached the cache: a second 1-process run embeds nothing
    monkeypatch.setenv("STYLEID_CACHE", str(tmp_path / "cache2"))
    from styleid_guidance.score import score

    again = score(tmp_path / "ref.png", gen, ["test-tiny"], frames=5, crop="center", device="cpu")
    assert again.computed == {"StyleID": 0}
