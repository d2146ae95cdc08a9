"""Which weights the demo runs on, and how the default launch picks a profile (torch-free, so
`styleid demo --help` and start-up checks are instant).

    tiny  built-in tiny random models: offline, seconds on CPU. Checks that the UI works; the images
          and scores it shows are NOT meaningful.
    sd15  the real identity models (released StyleID, facexlib ArcFace, OpenAI CLIP ViT-L/14) and
          IP-Adapter FaceID-Plus on SD1.5, the paper's set-up (about 6 GB of GPU memory).
    sdxl  sd15 + InstantID on SDXL.
    flux  sdxl + InfiniteYou on FLUX.1-dev and FLUX.1 Kontext [dev] (diffusers' FluxKontextPipeline):
          24-43 GB of GPU memory each, both kept once loaded; below ~80 GB add
          `--weights infiniteyou.cpu_offload=true --weights kontext.cpu_offload=true`.
    auto  (default) sd15 when the released StyleID weights are on disk or the Hub answers within
          a second or two; otherwise tiny, and the page says why.

Real weights are Hub ids or local folders (`--model`, `--arcface-model`, `--weights KEY=VALUE`),
downloaded on first use.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
from pathlib import Path
from typing import Any

from styleid_guidance.errors import StyleIDError
from styleid_guidance.hub.resolve import hub_endpoint, reachable
from styleid_guidance.pipelines import BASE_FAMILIES, STYLIZERS, stylizer_names

log = logging.getLogger("styleid.demo")

PROFILES = ("auto", "tiny", *BASE_FAMILIES)
DEFAULT_REAL_PROFILE = "sd15"

IDENTITY_MODELS = ("styleid", "arcface", "clip")
IDENTITY_LABELS = {"styleid": "StyleID", "arcface": "ArcFace", "clip": "CLIP"}

REAL_PROFILES = BASE_FAMILIES  # each real profile adds the next, heavier base-model family (sd15 < sdxl < flux)


def frameworks() -> tuple[str, ...]:
    """The Stylize tab's columns: every image stylizer in the registry (`styleid_guidance.pipelines.STYLIZERS`),
    in registration order, read on each use (a stylizer registered after start-up is there too)."""
    return stylizer_names("image")


def framework_label(framework: str) -> str:
    return STYLIZERS[framework].label


def profile_frameworks(profile: str) -> tuple[str, ...]:
    """The frameworks a profile runs: all of them with tiny models; a real profile, those whose base-model family
    is not heavier than it (a family the registry does not rank counts as the heaviest)."""
    if profile == "tiny":
        return frameworks()
    rank = REAL_PROFILES.index(profile)

    def family(fw: str) -> int:
        base = STYLIZERS[fw].base
        return REAL_PROFILES.index(base) if base in REAL_PROFILES else len(REAL_PROFILES) - 1

    return tuple(fw for fw in frameworks() if family(fw) <= rank)

# Real-profile defaults; styleid and arcface come from --model / --arcface-model, the rest from --weights KEY=VALUE.
DEFAULT_WEIGHTS = {
    "styleid": "kwanY/styleid",
    "arcface": None,  # facexlib's recognition_arcface_ir_se50.pth (its weights folder, or a download)
    "clip": "ViT-L-14/openai",
    "jojogan.stylegan_ckpt": "models/stylegan2-ffhq-config-f.pt",
    "jojogan.e4e_ckpt": "models/e4e_ffhq_encode.pt",
}

TINY_BANNER = (
    "**Tiny profile: built-in tiny random models.** The images and scores below are NOT meaningful; "
    "this profile only shows that the demo works. Launch with `--profile sd15`, `sdxl` or `flux` for real models."
)
# Tiny models take the same code paths with far fewer steps: every guided call stays in seconds on a CPU.
TINY_CALL_OVERRIDES = {"num_inference_steps": 2}
TINY_GUIDANCE = {"end": 0.5}  # with 2 steps: guide the first step only
TINY_JOJOGAN_ITERS = 2
DETECT_SIDE = 320  # px: faces are found on a copy at most this large
REAL_JOJOGAN_ITERS = 300

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


# ----------------------------------------------------------------------------------------- reachability


def hub_reachable(timeout: float = 1.5) -> tuple[bool, str]:
    """(reachable, reason) for the Hugging Face Hub (HF_ENDPOINT)."""
    return reachable(f"{hub_endpoint().rstrip('/')}/api/models/kwanY/styleid", timeout)


def github_reachable(timeout: float = 1.5) -> tuple[bool, str]:
    """(reachable, reason) for GitHub release downloads (facexlib's ArcFace and RetinaFace weights)."""
    return reachable("https://github.com/xinntao/facexlib/releases", timeout)


def go_offline() -> None:
    """Make every later Hub call read the local cache only (no download attempts that would hang)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    with contextlib.suppress(Exception):
        import huggingface_hub.constants as hf_constants

        hf_constants.HF_HUB_OFFLINE = True


def _in_hub_cache(repo_id: str) -> bool:
    from huggingface_hub.constants import HF_HUB_CACHE

    snapshots = Path(HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "snapshots"
    return snapshots.is_dir() and any(p.is_dir() and any(p.iterdir()) for p in snapshots.iterdir())


def weights_reason(source: str | None, what: str) -> str | None:
    """None when `source` (a local path or a Hub id) can be loaded now or downloaded; else why not."""
    if source is None:
        return None
    text = str(source)
    path = Path(text).expanduser()
    if path.exists():
        return None
    if not _HUB_ID.match(text) or text.startswith((".", "/", "~")) or text.endswith((".pt", ".pth", ".bin", ".onnx", ".safetensors")):
        return f"{what}: {text} not found"
    if _in_hub_cache(text):
        return None
    ok, why = hub_reachable()
    return None if ok else f"{what}: {text} is not in the local Hugging Face cache and {why}"


ARCFACE_FILE = "recognition_arcface_ir_se50.pth"  # as styleid_guidance.baselines.arcface (which imports torch)
RETINAFACE_FILE = "detection_Resnet50_Final.pth"


def facexlib_folder(model_rootpath: str | None = None) -> Path:
    """Where facexlib keeps (and downloads) its weights, found without importing it."""
    if model_rootpath:
        return Path(model_rootpath).expanduser()
    import importlib.util

    spec = importlib.util.find_spec("facexlib")
    if spec is None or not spec.origin:
        return Path("facexlib") / "weights"
    return Path(spec.origin).parent / "weights"


def arcface_reason(source: str | None, model_rootpath: str | None = None) -> str | None:
    """None when the ArcFace IR-SE50 weights are on disk (--arcface-model, --model-rootpath or facexlib's
    folder) or can be downloaded from GitHub now; else why not."""
    if source:
        path = Path(source).expanduser()
        path = path / ARCFACE_FILE if path.is_dir() else path
        return None if path.is_file() else f"ArcFace: {path} not found"
    path = facexlib_folder(model_rootpath) / ARCFACE_FILE
    if path.is_file():
        return None
    ok, why = github_reachable()
    return None if ok else f"ArcFace: {ARCFACE_FILE} is not in {path.parent} and {why} (pass --arcface-model PATH)"


def retinaface_reason(model_rootpath: str | None = None) -> str | None:
    """None when RetinaFace's weights are on disk or downloadable now; else why not."""
    path = facexlib_folder(model_rootpath) / RETINAFACE_FILE
    if path.is_file():
        return None
    ok, why = github_reachable()
    return None if ok else f"{RETINAFACE_FILE} is not in {path.parent} and {why}"


def resolve_profile(requested: str, weights: dict[str, str] | None = None) -> tuple[str, str | None]:
    """The profile to run and, when `auto` had to fall back to tiny, the sentence that says so."""
    if requested not in PROFILES:
        raise StyleIDError(f"--profile must be one of {', '.join(PROFILES)}, got {requested!r}")
    if requested != "auto":
        return requested, None
    source = (weights or {}).get("styleid", DEFAULT_WEIGHTS["styleid"])
    reason = weights_reason(source, "StyleID encoder")
    if reason is None:
        return DEFAULT_REAL_PROFILE, None
    return "tiny", f"The real model weights cannot be reached ({reason}), so the demo fell back to `--profile tiny`."


def parse_weight_overrides(items: list[str] | None) -> dict[str, str]:
    """`--weights KEY=VALUE` → {KEY: VALUE}. Keys: styleid, arcface, clip, jojogan.stylegan_ckpt,
    jojogan.e4e_ckpt, and FRAMEWORK.ARG for the stylizers' from_pretrained (e.g. instantid.base_model)."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key or not value.strip():
            raise StyleIDError(f"{item!r}: expected KEY=VALUE, e.g. jojogan.stylegan_ckpt=/models/stylegan2-ffhq-config-f.pt")
        head = key.split(".", 1)[0]
        if key not in DEFAULT_WEIGHTS and head not in frameworks():
            raise StyleIDError(f"{item!r}: unknown key {key!r}; use one of {', '.join(DEFAULT_WEIGHTS)} or "
                               f"{'/'.join(frameworks())}.ARGUMENT (an argument of that stylizer's from_pretrained)")
        out[key] = value.strip()
    return out


def _coerce(value: str) -> Any:
    low = value.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    return value
