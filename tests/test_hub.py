"""resolve_model_dir: local folders as they are; Hub ids download what the loaders can read (mocked, offline)."""
from __future__ import annotations

import pytest

from styleid_guidance import hub
from styleid_guidance.errors import StyleIDError
from styleid_guidance.hub import DEFAULT_PATTERNS, resolve_model_dir


@pytest.fixture
def online(monkeypatch, tmp_path):
    """The Hub, mocked: list_repo_files answers from `files`, snapshot_download records its patterns."""
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("STYLEID_OFFLINE", raising=False)
    state = {"files": [], "calls": []}

    def list_repo_files(repo, **kwargs):
        return list(state["files"])

    def snapshot_download(repo, allow_patterns=None, local_files_only=False, **kwargs):
        state["calls"].append((repo, tuple(allow_patterns), local_files_only))
        folder = tmp_path / "snapshot"
        folder.mkdir(exist_ok=True)
        return str(folder)

    monkeypatch.setattr(huggingface_hub, "list_repo_files", list_repo_files)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return state


def test_a_bin_only_repo_downloads_pytorch_model_bin(online):
    online["files"] = ["config.json", "pytorch_model.bin", "README.md"]
    resolve_model_dir("someone/bin-only")
    (_, patterns, _), = online["calls"]
    assert "pytorch_model.bin" in patterns and set(DEFAULT_PATTERNS) <= set(patterns)


def test_a_safetensors_repo_does_not_download_the_bin_too(online):
    online["files"] = ["config.json", "model.safetensors", "pytorch_model.bin"]
    resolve_model_dir("someone/both")
    (_, patterns, local_only), = online["calls"]
    assert patterns == DEFAULT_PATTERNS and not local_only


def test_explicit_patterns_are_the_callers(online):
    online["files"] = ["x/pytorch_model.bin"]
    resolve_model_dir("someone/repo", allow_patterns=("ControlNetModel/*",))
    assert online["calls"][0][1] == ("ControlNetModel/*",)


def test_offline_never_lists_or_downloads(monkeypatch, tmp_path):
    import huggingface_hub

    seen = []
    monkeypatch.setattr(huggingface_hub, "list_repo_files", lambda *a, **k: (_ for _ in ()).throw(AssertionError("listed")))

    def snapshot_download(repo, allow_patterns=None, local_files_only=False, **kwargs):
        seen.append(local_files_only)
        raise OSError("not cached")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.delenv("HF_HUB_OFFLINE")  # STYLEID_OFFLINE alone is enough
    with pytest.raises(StyleIDError, match="offline mode is on"):
        resolve_model_dir("someone/repo")
    assert seen == [True]


def test_a_listing_failure_falls_through_to_the_usual_error(online, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "list_repo_files", lambda *a, **k: (_ for _ in ()).throw(OSError("gated")))
    resolve_model_dir("someone/gated")
    assert online["calls"][0][1] == DEFAULT_PATTERNS
    assert hub._readable_patterns("a/b", ("*.json",)) == ("*.json",)
