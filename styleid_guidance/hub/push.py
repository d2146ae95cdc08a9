"""`push`: publish a StyleID encoder on the Hugging Face Hub the way open_clip and timm do — `create_repo` and
one `upload_folder` commit, safetensors only, with a model card whose `model-index` comes from `styleid eval`.

Everything that can go wrong is checked before anything is uploaded: the model loads, the eval folder belongs
to it, there is a token, the Hub answers, and an existing card is not overwritten unless asked. `dry_run=DIR`
writes exactly the folder that would be uploaded and contacts nothing.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import Arg, StyleIDError, reason
from ..files.atomic import atomic_dir

log = logging.getLogger("styleid.push")
FORMATS = ("styleid", "transformers")
FINAL = "final"  # a training run's output folder holds the encoder in final/
ALLOWED_SUFFIXES = (".safetensors", ".json", ".md", ".txt")  # no pickles on the Hub
BASE_MODELS = {("ViT-L-14", "openai"): "openai/clip-vit-large-patch14", ("ViT-B-16", "openai"): "openai/clip-vit-base-patch16"}


@dataclass
class PushResult:
    repo_id: str
    folder: Path  # what was (or, in a dry run, would be) uploaded
    files: list[str]
    url: str | None = None  # the commit (or pull request) on the Hub; None for a dry run


def model_folder(path: str | os.PathLike) -> Path:
    """A model folder, or a training run's OUTPUT (whose encoder is OUTPUT/final)."""
    from ..encoder.folder_format import CONFIG_NAME

    folder = Path(path)
    if not folder.is_dir():
        raise StyleIDError(f"{path}: not a folder; give a StyleID model folder or a training run's output folder")
    if not (folder / CONFIG_NAME).exists() and (folder / FINAL / CONFIG_NAME).exists():
        folder = folder / FINAL
    if not (folder / CONFIG_NAME).exists() and not (folder / "config.json").exists():
        raise StyleIDError(f"{path}: no {CONFIG_NAME} (nor {FINAL}/{CONFIG_NAME}); is this a StyleID model folder or a training run?")
    return folder


def check_eval_belongs(eval_dir: Path, model_dir: Path) -> None:
    """An eval folder belongs to the model when its embedding cache was computed from this very folder's files
    (eval keys its cache by the model folder's path and its files' mtimes and sizes: `ModelSpec.key`)."""
    from safetensors import safe_open

    from ..eval.cache import MODEL_KEY_LIMIT
    from ..eval.models import ModelSpec

    expected = ModelSpec("styleid", "styleid", str(model_dir)).key  # at fp32; another precision appends "@bf16"
    prefix = f"styleid:{model_dir.resolve()}:"
    caches = sorted((eval_dir / "embedding_cache").glob("*.safetensors"))
    seen_path = False
    for cache in caches:
        try:
            with safe_open(str(cache), "pt") as f:
                key = (f.metadata() or {}).get("model", "")
        except (OSError, ValueError):  # safetensors' own error types are ValueError subclasses or OSError
            continue
        if not key.startswith(prefix):
            continue
        seen_path = True
        if key in (expected, expected[:MODEL_KEY_LIMIT]) or key.startswith(expected + "@"):  # eval stores keys truncated
            return
    if seen_path:
        raise StyleIDError(f"{eval_dir}: evaluated an earlier version of {model_dir} (its files changed since); evaluate it again")
    raise StyleIDError(f"{eval_dir}: not an evaluation of {model_dir} (its embedding cache names another model, or there is none); "
                       f"run styleid eval --model {model_dir} -o DIR and push with that DIR")


def _stage(model_dir: Path, fmt: str, out: Path) -> Any:
    """Write the files to upload into `out`; returns the loaded encoder (the folder is proven to load)."""
    from ..encoder.model import StyleIDEncoder

    encoder = StyleIDEncoder.from_pretrained(str(model_dir), device="cpu").eval()
    if fmt == "transformers":
        encoder.export_transformers(out)
        return encoder
    out.mkdir(parents=True, exist_ok=True)
    for p in sorted(model_dir.rglob("*")):
        if not p.is_file() or p.name in ("README.md",):
            continue
        if p.suffix not in ALLOWED_SUFFIXES:
            log.info(f"not uploading {p.relative_to(model_dir)} (only safetensors weights and JSON/text go to the Hub)")
            continue
        dest = out / p.relative_to(model_dir)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, dest)
    return encoder


def _base_model(encoder: Any) -> str | None:
    backbone = encoder.config.backbone
    source = str(getattr(encoder.config, "source", "") or "")
    name = backbone.get("open_clip_model")
    pretrained = source.split("/")[-1] if source.startswith("open_clip:") else None
    return BASE_MODELS.get((name, pretrained))


def _hub_ready(token: str | None) -> str:
    """The token to use, or one line at once: no token, offline, or a Hub that does not answer."""
    from huggingface_hub import get_token

    from .resolve import hub_endpoint, offline, reachable

    if offline():
        raise StyleIDError("cannot push while offline (HF_HUB_OFFLINE / STYLEID_OFFLINE is set); unset it, or use {dry_run} "
                           "to write the folder locally", dry_run=Arg("dry_run", flag="--dry-run DIR"))
    token = token or get_token()
    if not token:
        raise StyleIDError("no Hugging Face token: run `hf auth login` or set HF_TOKEN (a token with write access)")
    ok, why = reachable(hub_endpoint())
    if not ok:
        raise StyleIDError(f"the Hub at {hub_endpoint()} does not answer ({why}); nothing was uploaded")
    return token


def push(model: str | os.PathLike, repo_id: str, *, eval_dir: str | os.PathLike | None = None, fmt: str = "styleid",
         private: bool = False, create_pr: bool = False, revision: str | None = None, dry_run: str | os.PathLike | None = None,
         overwrite_card: bool = False, license: str = "apache-2.0", token: str | None = None,
         commit_message: str | None = None) -> PushResult:
    """Publish `model` (a model folder or training run) as `repo_id`; see the module docstring."""
    from .model_card import build_card, read_eval

    if fmt not in FORMATS:
        raise StyleIDError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise StyleIDError("{repo_id}: use USER/NAME (or ORG/NAME)", param="repo_id", repo_id=Arg("repo_id", repo_id))
    api = None
    if dry_run is None:  # first: no token / offline is one line in about a second, before torch is even imported
        from huggingface_hub import HfApi

        api = HfApi(token=_hub_ready(token))
    folder = model_folder(model)
    eval_metrics = None
    if eval_dir is not None:
        _, eval_metrics = read_eval(eval_dir)
        check_eval_belongs(Path(eval_dir), folder)
    if dry_run is not None and Path(dry_run).exists() and any(Path(dry_run).iterdir()):
        raise StyleIDError(f"{dry_run}: not empty; the dry run writes exactly the upload there, so give a new or empty folder")
    with tempfile.TemporaryDirectory(prefix="styleid-push-") as tmp:
        stage = Path(tmp) / "upload"
        encoder = _stage(folder, fmt, stage)
        card = build_card(repo_id, fmt=fmt, base_model=_base_model(encoder), license=license, eval_metrics=eval_metrics)
        card.save(str(stage / "README.md"))
        files = sorted(p.relative_to(stage).as_posix() for p in stage.rglob("*") if p.is_file())
        if dry_run is not None:
            with atomic_dir(dry_run) as out:
                shutil.copytree(stage, out, dirs_exist_ok=True)
            return PushResult(repo_id, Path(dry_run), files)
        return _upload(api, stage, repo_id, files, private, create_pr, revision, overwrite_card, commit_message)


def _upload(api: Any, stage: Path, repo_id: str, files: list[str], private: bool, create_pr: bool, revision: str | None,
            overwrite_card: bool, commit_message: str | None) -> PushResult:
    from huggingface_hub.errors import HfHubHTTPError

    network: tuple[type[BaseException], ...] = (HfHubHTTPError, OSError)
    for module, name in (("httpx", "HTTPError"), ("requests.exceptions", "RequestException")):  # whichever transport it uses
        try:
            network += (getattr(__import__(module, fromlist=[name]), name),)
        except ImportError:
            pass
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if not overwrite_card and api.file_exists(repo_id, "README.md", revision=revision):
            raise StyleIDError("{repo} already has a model card (README.md); pass {fix} to replace it", repo=repo_id,
                               fix=Arg("overwrite_card", True, flag="--overwrite-card"))
        info = api.upload_folder(repo_id=repo_id, folder_path=str(stage), repo_type="model", revision=revision,
                                 create_pr=create_pr, commit_message=commit_message or "Upload StyleID encoder with styleid push")
    except network as err:
        raise StyleIDError(f"{repo_id}: the Hub refused or failed the upload ({reason(err)[:300]}); one commit is all or "
                           f"nothing, so nothing was half-uploaded") from None
    url = getattr(info, "pr_url", None) or getattr(info, "commit_url", None) or str(info)
    return PushResult(repo_id, stage, files, url)
