"""Installing the node pack the way ComfyUI users do: this repository cloned into ComfyUI/custom_nodes/, then
`python -m pip install -r requirements.txt` run in that folder with ComfyUI's Python (what ComfyUI-Manager does).

The clone is this checkout's files (tracked, plus new files git does not ignore); pip builds and installs it into a
separate target folder put first on the server's PYTHONPATH, so the nodes provably come from the clone's build and
not from the test environment's editable install. Then the real server loads the clone and runs a node."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from comfyui_support import REPO, ComfyServer, need_root, requires_comfyui
from styleid_guidance.integrations.comfyui import NODE_IDS

pytestmark = requires_comfyui()
FACE = REPO / "examples" / "faces" / "astronaut.jpg"


def clone_of_checkout(dest: Path) -> Path:
    """The files a `git clone` of this checkout would hold (uncommitted edits included, ignored files not)."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("comfyui-clone")
    clone = clone_of_checkout(work / "styleid-guidance")
    site = work / "site"
    # the user's step, in the clone's folder; --no-deps and no build isolation because everything the package needs
    # is already in this environment and nothing may be downloaded in a test
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                          "--target", str(site), "-r", "requirements.txt"], cwd=clone, capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr[-3000:]
    srv = ComfyServer(need_root(), work, pack=clone, env={"PYTHONPATH": str(site)})
    try:
        shutil.copy(FACE, srv.copy / "input" / FACE.name)
        srv.wait_ready()
        yield srv, site
    finally:
        srv.stop()


def test_requirements_install_this_checkout():
    lines = [ln.strip() for ln in (REPO / "requirements.txt").read_text().splitlines()]
    assert [ln for ln in lines if ln and not ln.startswith("#")] == ["."]


def test_a_clone_in_custom_nodes_loads_every_node_from_its_own_build(server):
    srv, site = server
    assert "IMPORT FAILED" not in srv.import_line(), srv.log()[-3000:]
    info = srv.get("/object_info")
    for node in NODE_IDS:
        assert info[node]["category"] == "StyleID", node
    result = srv.run({"1": {"class_type": "StyleIDTestPackageFile", "inputs": {}}})
    assert result["status"]["status_str"] == "success", result["status"]
    (module_file,) = result["outputs"]["1"]["file"]
    assert Path(module_file).resolve().is_relative_to(site.resolve()), module_file


def test_a_clone_runs_a_scoring_graph(server):
    srv, _ = server
    graph = {"1": {"class_type": "LoadImage", "inputs": {"image": FACE.name}},
             "2": {"class_type": "StyleIDLoader", "inputs": {"model": "test-tiny", "device": "cpu", "precision": "fp32",
                                                             "detector": "mtcnn"}},
             "3": {"class_type": "StyleIDSimilarity", "inputs": {"styleid_model": ["2", 0], "reference": ["1", 0],
                                                                 "images": ["1", 0], "threshold": 0.4}}}
    result = srv.run(graph)
    assert result["status"]["status_str"] == "success", json.dumps(result["status"])[:2000]
    (sim,) = result["outputs"]["3"]["similarity"]
    assert sim == pytest.approx(1.0, abs=1e-5)  # a photo against itself
