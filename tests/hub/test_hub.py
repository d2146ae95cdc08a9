"""resolve_model_dir: local folders as they are; Hub ids download what the loaders can read (mocked, offline)."""
from __future__ import annotations

import pytest

from styleid_guidance.hub import resolve as hub
from styleid_guidance.errors import StyleIDError
from styleid_guidance.hub.resolve import DEFAULT_PATTERNS, resolve_model_dir


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
    monkeypatch.setattr(hub, "reachable", lambda url, timeout=2.0: (True, ""))  # the Hub answers
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


def test_an_unanswered_hub_reads_the_cache_only_and_fails_in_seconds(monkeypatch, tmp_path):
    """No offline flag, no network (the test harness refuses connections): no minute of retries, one sentence."""
    import time

    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("STYLEID_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "_answers", {})
    seen = []

    def snapshot_download(repo, allow_patterns=None, local_files_only=False, **kwargs):
        seen.append(local_files_only)
        if not local_files_only:
            time.sleep(60)  # what huggingface_hub's retries cost
        raise OSError("not cached")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    start = time.perf_counter()
    with pytest.raises(StyleIDError, match=r"cannot be reached .* not in the local cache.*hf download someone/repo"):
        resolve_model_dir("someone/repo", kind="StyleID")
    assert time.perf_counter() - start < 5 and seen == [True]
    assert hub.reachable("https://huggingface.co/x")[0] is False and len(hub._answers) == 1  # asked once per host


def test_a_cached_repo_loads_when_the_hub_does_not_answer(monkeypatch, tmp_path):
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "reachable", lambda url, timeout=2.0: (False, "huggingface.co cannot be reached"))
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        lambda repo, allow_patterns=None, local_files_only=False, **k: str(tmp_path) if local_files_only else 1 / 0)
    assert resolve_model_dir("someone/repo") == tmp_path


def test_a_hub_failure_keeps_its_cause_and_a_bug_is_not_swallowed(online, monkeypatch):
    import huggingface_hub

    def refused(repo, **kwargs):
        raise OSError("403 gated repo")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", refused)
    with pytest.raises(StyleIDError, match="not available .*OSError: 403 gated repo") as err:
        resolve_model_dir("someone/gated", flag="--teacher")
    assert isinstance(err.value.__cause__, OSError) and err.value.param == "id_or_dir"
    assert err.value.for_cli().startswith("--teacher: the model weights 'someone/gated'")

    def bug(repo, **kwargs):
        raise KeyError("a bug in our code, not a user's mistake")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", bug)
    with pytest.raises(KeyError):
        resolve_model_dir("someone/repo")
