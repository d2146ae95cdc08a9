"""The package's dependency metadata installs beside the torch and the ComfyUI that people run.

No dependency carries an upper bound unless a comment on its line names the incompatibility; the build machines'
torch cap lives in the Makefile, never in the package. The real check asks pip (dry run, against the package index,
without this machine's constraint file) to resolve this checkout together with the newest torch and the newer
vendored ComfyUI's requirements.txt.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from support import REPO

VENDOR = REPO.parent / "shared" / "vendor"
NEWEST_TORCH = "2.15.0"  # the current release, beyond this machine's local wheels
UPPER = re.compile(r"<|==|~=|\^")


def requirement_lines() -> list[tuple[str, str]]:
    """(requirement, the rest of its line) for every dependency and extra in pyproject.toml."""
    text = (REPO / "pyproject.toml").read_text()
    meta = tomllib.loads(text)["project"]
    reqs = list(meta["dependencies"]) + [r for extra in meta["optional-dependencies"].values() for r in extra]
    lines = text.splitlines()
    out = []
    for req in reqs:
        (line,) = [ln for ln in lines if f'"{req}"' in ln][:1] or [""]
        out.append((req, line.split(f'"{req}"', 1)[1] if line else ""))
    return out


def test_no_upper_bound_without_a_named_incompatibility():
    for req, rest in requirement_lines():
        spec = str(Requirement(req).specifier)
        if UPPER.search(spec):
            assert "incompatib" in rest, f"{req}: an upper bound needs a comment naming the known incompatibility"


def test_the_package_does_not_cap_torch_and_the_makefile_installs_this_machines():
    (torch_req,) = [Requirement(r) for r, _ in requirement_lines() if Requirement(r).name == "torch"]
    assert torch_req.specifier.contains(NEWEST_TORCH) and torch_req.specifier.contains("2.4.0")
    assert "torch==2.14.1" in (REPO / "Makefile").read_text()


def test_no_comfyui_pins_in_the_extras():
    # each ComfyUI's requirements.txt goes into its own test environment (Makefile), never into our metadata
    names = {Requirement(r).name.lower() for r, _ in requirement_lines()}
    assert not {n for n in names if n.startswith("comfyui-")}


def _pip_can_reach_the_index() -> bool:
    probe = subprocess.run([sys.executable, "-m", "pip", "index", "versions", "torch"], capture_output=True, text=True,
                           timeout=120, env=dict(os.environ, PIP_CONFIG_FILE=os.devnull))
    return probe.returncode == 0 and NEWEST_TORCH in probe.stdout


@pytest.mark.slow
def test_pip_resolves_the_checkout_beside_newest_torch_and_comfyui_033(tmp_path):
    requirements = VENDOR / "ComfyUI-0.33" / "requirements.txt"
    if not requirements.is_file() or not _pip_can_reach_the_index():
        if os.environ.get("CI"):
            pytest.fail(f"CI needs {requirements} and the package index for this check")
        pytest.skip("needs the vendored ComfyUI 0.33 and the package index")
    report = tmp_path / "report.json"
    # PIP_CONFIG_FILE=/dev/null: without this machine's constraint file (it caps torch at its local wheels)
    env = dict(os.environ, PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                          "--report", str(report), str(REPO), f"torch=={NEWEST_TORCH}", "-r", str(requirements)],
                         capture_output=True, text=True, timeout=900, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    chosen = {canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"]
              for item in json.loads(report.read_text())["install"]}
    assert chosen["torch"] == NEWEST_TORCH
    assert chosen["styleid-guidance"] and chosen["comfyui-frontend-package"] == "1.49.6"
