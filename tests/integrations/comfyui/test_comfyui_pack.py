"""The ComfyUI node pack without a running server: the IMAGE edge, scoring and gating, the install step,
and the Comfy Registry metadata through comfy-cli's own `comfy node validate`."""
from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch

from styleid_guidance.errors import StyleIDError
from styleid_guidance.integrations import comfyui
from styleid_guidance.integrations.comfyui import NODE_IDS
from styleid_guidance.integrations.comfyui.images import bchw_to_image, check_finite, empty_image, image_to_bchw
from styleid_guidance.integrations.comfyui.install import install
from styleid_guidance.integrations.comfyui.scoring import Scores, gate

PACK = Path(comfyui.__file__).resolve().parent


def test_image_edge_round_trips_and_names_bad_inputs():
    img = torch.rand(2, 5, 7, 3)
    x = image_to_bchw(img, "images")
    assert x.shape == (2, 3, 5, 7) and torch.equal(bchw_to_image(x), img)
    assert image_to_bchw(torch.rand(1, 4, 4, 4), "a").shape == (1, 3, 4, 4)  # alpha dropped
    grey = image_to_bchw(torch.full((1, 2, 2, 1), 0.25), "a")
    assert grey.shape == (1, 3, 2, 2) and float(grey.mean()) == 0.25
    with torch.inference_mode():  # ComfyUI's execution context
        x = image_to_bchw(torch.rand(1, 3, 3, 3), "a")
    assert not x.is_inference()  # usable in autograd later
    for bad, words in [(torch.rand(4, 4, 3), "4 dimensions"), (torch.rand(0, 4, 4, 3), "batch is empty"),
                       (torch.rand(1, 4, 4, 2), "channels"), (torch.full((1, 2, 2, 3), float("nan")), "NaN")]:
        with pytest.raises(StyleIDError, match=words) as err:
            image_to_bchw(bad, "reference")
        assert str(err.value).startswith("reference:") and "\n" not in str(err.value)
    assert empty_image(8, 6).shape == (0, 8, 6, 3)
    with pytest.raises(StyleIDError, match="finite"):
        check_finite(float("nan"), "scale")


def test_gate_sorts_filters_and_can_pass_nothing():
    sims = [0.2, 0.9, float("nan"), 0.5, 0.9]
    r = gate(sims, "threshold", 0.4, 1)
    assert r.accepted == [1, 4, 3] and r.scores == [0.9, 0.9, 0.5] and r.rejected == [0, 2]
    r = gate(sims, "top_k", 0.0, 2)
    assert r.accepted == [1, 4] and r.rejected == [3, 0, 2]
    r = gate(sims, "threshold_then_top_k", 0.6, 5)
    assert r.accepted == [1, 4]
    r = gate(sims, "threshold", 0.95, 1)
    assert r.accepted == [] and r.scores == [] and sorted(r.rejected) == [0, 1, 2, 3, 4]
    with pytest.raises(StyleIDError, match="threshold"):
        gate(sims, "threshold", float("nan"), 1)


def test_scores_table_is_csv_with_one_row_per_image():
    s = Scores(torch.tensor([[0.5, 0.7], [0.1, 0.3]]), [0.6, 0.2], [True, False], [81.0, None], [True, False], [True, True], 0.4)
    lines = s.csv().strip().splitlines()
    assert lines[0] == "image,ref_0,ref_1,similarity,verdict,likeness_percent,face_found"
    assert lines[1] == "0,0.500000,0.700000,0.600000,same,81.0,yes"
    assert lines[2].startswith("1,0.100000,0.300000,0.200000,different,,no")


def test_import_needs_no_comfyui():
    code = "import sys, styleid_guidance.integrations.comfyui as c; assert 'comfy' not in sys.modules; print(','.join(c.NODE_IDS))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ",".join(NODE_IDS) and "StyleIDPickFace" in NODE_IDS


def test_install_links_the_pack_into_custom_nodes(tmp_path, capsys):
    from styleid_guidance.cli import run

    comfy = tmp_path / "ComfyUI"
    (comfy / "comfy").mkdir(parents=True)
    (comfy / "main.py").write_text("")
    assert run(["comfyui", "install", str(comfy)]) == 0
    link = comfy / "custom_nodes" / "styleid"
    assert link.is_symlink() and link.resolve() == PACK and (link / "__init__.py").is_file()
    assert "installed at" in capsys.readouterr().out
    assert install(comfy) == link  # idempotent
    copied = install(comfy, name="styleid_copy", copy=True)
    assert (copied / "pyproject.toml").read_text() == (PACK / "pyproject.toml").read_text() and not copied.is_symlink()
    assert run(["comfyui", "install", str(tmp_path)]) == 2
    assert "not a ComfyUI folder" in capsys.readouterr().err
    (comfy / "custom_nodes" / "other").mkdir()
    with pytest.raises(StyleIDError, match="already exists"):
        install(comfy, name="other")


def test_registry_metadata():
    meta = tomllib.loads((PACK / "pyproject.toml").read_text())
    comfy = meta["tool"]["comfy"]
    assert comfy["PublisherId"] and comfy["DisplayName"] and comfy["requires-comfyui"] == comfyui.SUPPORTED_COMFYUI
    assert all(m["location"].startswith("/models/") and m["model_url"].startswith("https://") for m in comfy["Models"])
    root = tomllib.loads((PACK.parents[1] / "pyproject.toml").read_text())
    assert meta["project"]["version"] == root["project"]["version"]


def _comfy_cli() -> list[str] | None:
    """comfy-cli as `python -m comfy_cli`: found in any environment that can import it (a layered one included)."""
    import importlib.util

    return [sys.executable, "-m", "comfy_cli"] if importlib.util.find_spec("comfy_cli") else None


def _validate(folder: Path, home: Path) -> subprocess.CompletedProcess:
    # offline and untracked: telemetry off, and any HTTP(S) attempt would hit a closed local port
    env = dict(os.environ, DO_NOT_TRACK="1", COMFY_NO_TELEMETRY="1", HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9", NO_PROXY="", PATH=os.environ.get("PATH", ""),
               RUFF_CACHE_DIR=str(home / "ruff-cache"))  # its security check runs ruff, which caches in the cwd
    return subprocess.run([*_comfy_cli(), "node", "validate"], cwd=folder, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(_comfy_cli() is None and not os.environ.get("CI"), reason="comfy-cli is not installed (pip install -e '.[dev]')")
def test_comfy_node_validate_accepts_the_pack(tmp_path):
    out = _validate(PACK, tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "All validation checks passed" in out.stdout + out.stderr
    broken = tmp_path / "broken"
    broken.mkdir()
    text = (PACK / "pyproject.toml").read_text().replace('version = "0.1.0"\n', "")
    (broken / "pyproject.toml").write_text(text)
    bad = _validate(broken, tmp_path)  # the check is real: without a version the pack is refused
    assert bad.returncode != 0 and "version" in bad.stdout + bad.stderr
