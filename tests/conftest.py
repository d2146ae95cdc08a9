"""Offline, CPU-only, deterministic test harness."""
from __future__ import annotations

import os

# before any Hugging Face import: a test that reaches for the network is a bug
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["STYLEID_OFFLINE"] = "1"
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import ipaddress
import logging
import socket

import numpy as np
import pytest
import torch
from PIL import Image

# Tiny models gain nothing from intra-op threads (on a busy machine they thrash); `make test` runs two
# pytest-xdist workers instead, one per core.
torch.set_num_threads(1)

_real_connect = socket.socket.connect


def _guarded_connect(self, address):
    host = address[0] if isinstance(address, tuple) else address
    try:
        local = isinstance(host, str) and (host == "localhost" or ipaddress.ip_address(host).is_loopback)
    except ValueError:
        local = False
    if self.family == socket.AF_UNIX or local:
        return _real_connect(self, address)
    raise RuntimeError(f"test tried to reach the network: {address!r}")


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    yield


@pytest.fixture(autouse=True, scope="module")
def _seed_module():
    """Module-scoped fixtures (tiny random models) must not depend on which tests ran before them
    on the same xdist worker."""
    torch.manual_seed(0)
    np.random.seed(0)
    yield


@pytest.fixture(autouse=True)
def _styleid_logger_as_a_library_user_has_it():
    """A command run in-process (`cli.run([...])`) installs its stderr handler on the "styleid" logger and stops
    propagation (the CLI owns stderr); the next test, maybe a caplog one, starts from the library's state again."""
    yield
    from styleid_guidance.cli.runtime import CommandHandler

    top = logging.getLogger("styleid")
    top.handlers[:] = [h for h in top.handlers if not isinstance(h, CommandHandler)]
    top.propagate = True
    top.setLevel(logging.NOTSET)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)
    yield


@pytest.fixture
def tiny_encoder():
    from styleid_guidance import StyleIDEncoder

    return StyleIDEncoder.from_open_clip("test-tiny", pretrained=None)


@pytest.fixture(scope="session")
def astronaut() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut())


@pytest.fixture(scope="session")
def camera() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.camera()).convert("RGB")


@pytest.fixture(scope="session")
def artifacts_dir():
    """Images worth looking at after a run (screenshots, grids) go here; CI keeps the folder."""
    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "test-artifacts")
    os.makedirs(path, exist_ok=True)
    return path
