"""Seeded construction that leaves the caller's random state alone."""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Default (CPU) initialisation seeded with `seed` inside the block; the caller's RNG state is restored after.

    Only the CPU generator is forked and seeded: the tiny models are built on the CPU, and `torch.manual_seed`
    would also reseed every CUDA device, which `fork_rng(devices=[])` does not restore."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(int(seed))
        yield
