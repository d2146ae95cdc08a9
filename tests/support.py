"""Pieces several test files share: the repository root, a free local port, the environment for a `styleid`
subprocess, the tiny training flags, and the checks every stylizer (IP-Adapter, InstantID, InfiniteYou, ...)
must pass. Imported as `from support import ...` (tests/ is on sys.path, as for `chromium`)."""
from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
FACES = REPO / "examples" / "faces"

# the trainer on the built-in 64-px backbone: 4 identities × 2 images a batch, a step in well under a second
TINY_TRAIN = ["--backbone", "test-tiny", "--ids-per-batch", "4", "--images-per-id", "2", "--lora-alpha", "16",
              "--lr", "1e-2", "--num-workers", "0", "--no-progress", "--log-every", "1"]


# `styleid score` with the tiny model on the CPU, reproducible (fp32), quiet
SCORE_TINY = ["--model", "test-tiny", "--crop", "center", "--precision", "fp32", "--no-progress", "--device", "cpu"]


@pytest.fixture(autouse=True)
def score_cache(tmp_path, monkeypatch):
    """Every test its own embedding cache (imported by the score test modules that use it, so it is autouse there)."""
    monkeypatch.setenv("STYLEID_CACHE", str(tmp_path / "cache"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def subprocess_env(**extra: str) -> dict[str, str]:
    """This environment for a child `python -m styleid_guidance ...`: offline, one thread, unbuffered, the checkout
    importable."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", STYLEID_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def assert_guidance_helps_and_scale_zero_is_exact(run: Callable[..., torch.Tensor], loss: Any, mode: str,
                                                 scale: float = 0.2, margin: float = 0.01) -> None:
    """`run(**kw)` → images [B,3,H,W] at a fixed seed. Guidance at scale 0 is the unguided image bit for bit;
    at `scale` it raises the StyleID similarity by more than `margin`; and a later unguided run is untouched
    by the guided one (nothing left attached)."""
    from styleid_guidance.integrations import IdentityGuidanceCallback

    plain = run()
    zero = run(identity_guidance=IdentityGuidanceCallback(loss, scale=0.0, mode=mode))
    torch.testing.assert_close(zero, plain, atol=0, rtol=0)
    guided = run(identity_guidance=IdentityGuidanceCallback(loss, scale=scale, mode=mode))
    with torch.no_grad():
        before, after = float(loss.similarity(plain)), float(loss.similarity(guided))
    assert after > before + margin, (before, after)
    torch.testing.assert_close(run(), plain, atol=0, rtol=0)


def assert_tiny_leaves_the_global_rng_alone(*build: Callable[[], Any]) -> None:
    """Building the tiny models is seeded (the same weights every time) without reseeding the caller's RNG."""
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    cuda_before = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    for b in build:
        b()
    assert torch.equal(torch.get_rng_state(), before)
    if torch.cuda.is_available():
        assert all(torch.equal(a, b) for a, b in zip(torch.cuda.get_rng_state_all(), cuda_before))


def assert_example_saves_a_grid(main: Callable[[list[str]], int], out: Path, columns: int = 3) -> Image.Image:
    """An `examples/*_guided.py` main, run tiny: a PNG grid of reference / unguided / guided columns (+ captions)."""
    assert main(["--tiny", "--inference-steps", "2", "--augment-views", "0", "--output", str(out)]) == 0
    grid = Image.open(out)
    assert grid.size[0] == columns * 256 and grid.size[1] > 256, grid.size
    return grid


class SmallFaceNet(torch.nn.Module):
    """A stand-in for IR-SE50 with its interface (112-px input in [-1, 1] → 512-d), ~100x cheaper on a CPU: for
    tests of the demo's tab logic (the browser test runs the tiny profile's real IR-SE50)."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 4, 4), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(4),
                                       torch.nn.Flatten(), torch.nn.Linear(128, 512))

    def forward(self, x):
        assert x.shape[-2:] == (112, 112)
        return self.net(x)


def tiny_demo_models() -> Any:
    """The demo's tiny profile on the CPU with SmallFaceNet as its ArcFace (seeded)."""
    from styleid_guidance.demo.profiles import Models

    m = Models("tiny", device="cpu")
    torch.manual_seed(0)
    m._built["id:arcface"] = SmallFaceNet().eval()
    return m
