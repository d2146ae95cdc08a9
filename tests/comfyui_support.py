"""Helpers for the ComfyUI tests: find the pinned ComfyUI, import its engine in-process, build tiny random
SD1.5- and FLUX-layout models, and start a headless server on a temporary copy with the node pack linked in.

ComfyUI is GPL-3.0: it is imported from where it lies (COMFYUI_ROOT, default ../shared/vendor/ComfyUI beside
the repository), never copied into the project; the server runs on a temporary copy because it writes into its
own folder.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from support import REPO, free_port

PACK = REPO / "integrations" / "comfyui"
TEST_NODES = Path(__file__).resolve().parent / "comfyui_test_nodes"


def comfyui_root() -> Path | None:
    root = Path(os.environ.get("COMFYUI_ROOT") or (REPO.parent / "shared" / "vendor" / "ComfyUI")).resolve()
    return root if (root / "main.py").is_file() and (root / "comfy").is_dir() else None


def comfyui_version(root: Path) -> tuple[int, ...]:
    """ComfyUI's own `__version__` (comfyui_version.py) as a tuple of ints."""
    import re

    text = (root / "comfyui_version.py").read_text()
    return tuple(int(x) for x in re.search(r'__version__\s*=\s*"([0-9.]+)"', text).group(1).split("."))


def skip_reason() -> str:
    return (f"no ComfyUI found (set COMFYUI_ROOT; default {REPO.parent / 'shared' / 'vendor' / 'ComfyUI'}) "
            "— these tests run the node pack through the real engine")


def requires_comfyui() -> Any:
    """Skip without a ComfyUI, except under CI (CI set, as .ci/run does), where a missing one fails the run."""
    import pytest

    # under CI the tests run and their fixtures fail through need_root()
    return pytest.mark.skipif(comfyui_root() is None and not os.environ.get("CI"), reason=skip_reason())


def need_root() -> Path:
    root = comfyui_root()
    if root is None:
        import pytest

        pytest.fail(f"CI is set and {skip_reason()}")
    return root


def import_comfy(root: Path) -> None:
    """Make ComfyUI's `comfy` package importable here, on the CPU, without it parsing pytest's argv."""
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    import comfy.options

    comfy.options.enable_args_parsing(False)
    import comfy.cli_args

    comfy.cli_args.args.cpu = True


TINY_UNET = {"image_size": 32, "in_channels": 4, "out_channels": 4, "model_channels": 32, "num_res_blocks": [1, 1],
             "channel_mult": [1, 2], "transformer_depth": [0, 1], "transformer_depth_output": [0, 0, 1, 1],
             "transformer_depth_middle": 1, "context_dim": 32, "use_linear_in_transformer": False, "adm_in_channels": None,
             "use_temporal_attention": False, "use_spatial_transformer": True, "legacy": False, "num_head_channels": -1,
             "use_temporal_resblock": False}


def tiny_sd15(seed: int = 0, std: float = 0.02) -> Any:
    """A ModelPatcher around `comfy.supported_models.SD15` with a tiny UNet and seeded random weights."""
    import comfy.supported_models

    cfg = comfy.supported_models.SD15(dict(TINY_UNET))
    cfg.unet_config["num_heads"] = 2
    return _seeded_patcher(cfg, seed, std)


def _seeded_patcher(cfg: Any, seed: int, std: float) -> Any:
    """A CPU ModelPatcher around `cfg`'s model (a comfy.supported_models entry) with seeded N(0, std) weights."""
    import torch
    import comfy.model_patcher

    cfg.set_inference_dtype(torch.float32, None)
    cpu = torch.device("cpu")
    with torch.random.fork_rng(devices=[]), torch.inference_mode(False):
        torch.manual_seed(seed)
        base = cfg.get_model({}, device=cpu)
        for p in base.diffusion_model.parameters():  # comfy's ops leave weights uninitialised
            p.data.normal_(0.0, std)
    return comfy.model_patcher.ModelPatcher(base, load_device=cpu, offload_device=cpu)


def sample_and_decode(model: Any, vae: Any, seed: int, steps: int, cfg: float, sampler: str, scheduler: str,
                      positive: Any, negative: Any, latent_shape: tuple[int, ...]) -> tuple[Any, Any]:
    """ComfyUI's own sampler from zero latents and seeded noise, then the VAE, both inside `torch.inference_mode()`
    as ComfyUI's executor runs nodes: (latent, image)."""
    import torch
    import comfy.sample

    latent = torch.zeros(latent_shape)
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        out = comfy.sample.sample(model, noise, steps, cfg, sampler, scheduler, positive, negative, latent, seed=seed,
                                  disable_pbar=True)
        image = vae.decode(out)
    return out, image


def tiny_taesd(seed: int = 0, std: float = 0.05, latent_channels: int = 4, vae_scale: float = 0.18215,
               vae_shift: float = 0.0) -> Any:
    """A `comfy.sd.VAE` holding a TAESD (as VAELoader builds from models/vae_approx) with seeded random weights;
    `tiny_taesd(latent_channels=16, vae_scale=0.3611, vae_shift=0.1159)` is VAELoader's `taef1` for FLUX."""
    import torch
    import comfy.sd
    import comfy.taesd.taesd

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        taesd = comfy.taesd.taesd.TAESD(latent_channels=latent_channels)
        sd = {k: torch.randn_like(v) * std for k, v in taesd.state_dict().items()}
    sd["vae_scale"], sd["vae_shift"] = torch.tensor(vae_scale), torch.tensor(vae_shift)
    return comfy.sd.VAE(sd=sd)


# A tiny FLUX is built the way ComfyUI loads a real checkpoint: its own detector reads a state dict in BFL's key
# layout and returns the model's full parameter set for this ComfyUI version (newer ones add fields such as
# `txt_ids_dims`); only the widths are then shrunk, since 0.3.64's detector fixes them at full size. One double and
# one single block, 2 heads of 32 (axes_dim sums to hidden_size / num_heads), 32-d text and pooled vectors.
TINY_FLUX_SIZES = {"hidden_size": 64, "num_heads": 2, "axes_dim": [8, 12, 12], "mlp_ratio": 2.0, "context_in_dim": 32,
                   "vec_in_dim": 32}


def flux_checkpoint_keys(guidance_embed: bool) -> dict[str, Any]:
    """The keys of a FLUX checkpoint (BFL's layout) that ComfyUI's detector reads, at the tiny widths."""
    import torch

    h, head = TINY_FLUX_SIZES["hidden_size"], TINY_FLUX_SIZES["hidden_size"] // TINY_FLUX_SIZES["num_heads"]
    sd = {"img_in.weight": torch.zeros(h, 16 * 2 * 2),  # 16 latent channels in 2x2 patches
          "txt_in.weight": torch.zeros(h, TINY_FLUX_SIZES["context_in_dim"]),
          "vector_in.in_layer.weight": torch.zeros(h, TINY_FLUX_SIZES["vec_in_dim"]),
          "double_blocks.0.img_attn.norm.key_norm.scale": torch.zeros(head),
          "single_blocks.0.norm.key_norm.scale": torch.zeros(head)}
    if guidance_embed:
        sd["guidance_in.in_layer.weight"] = torch.zeros(h, 256)
    return sd


def tiny_flux(seed: int = 0, std: float = 0.02, schnell: bool = False) -> Any:
    """A ModelPatcher around the model ComfyUI detects in a tiny FLUX checkpoint: dev (guidance embedding,
    `comfy.supported_models.Flux`) or schnell (`FluxSchnell`, flow sampling), with seeded random weights."""
    import comfy.model_detection

    sd = flux_checkpoint_keys(guidance_embed=not schnell)
    unet_config = comfy.model_detection.detect_unet_config(sd, "")
    unet_config.update(TINY_FLUX_SIZES)
    cfg = comfy.model_detection.model_config_from_unet_config(unet_config, sd)
    return _seeded_patcher(cfg, seed, std)


# A tiny Wan 2.1 text-to-video model, also through ComfyUI's detector: it reads every width from the checkpoint
# (dim 128 = one head of 128, ffn 256, one block; 16-channel latents in 1x2x2 patches).
def wan21_checkpoint_keys(dim: int = 128, ffn: int = 256) -> dict[str, Any]:
    """The keys of a Wan 2.1 T2V checkpoint that ComfyUI's detector reads, at tiny widths."""
    import torch

    return {"head.modulation": torch.zeros(1, 2, dim), "head.head.weight": torch.zeros(16 * 1 * 2 * 2, dim),
            "blocks.0.ffn.0.weight": torch.zeros(ffn, dim), "patch_embedding.weight": torch.zeros(dim, 16, 1, 2, 2)}


def tiny_wan21(seed: int = 0, std: float = 0.02) -> Any:
    """A ModelPatcher around the model ComfyUI detects in a tiny Wan 2.1 T2V checkpoint (`WAN21_T2V`, flow
    matching with Wan's shift), with seeded random weights."""
    import comfy.model_detection

    sd = wan21_checkpoint_keys()
    cfg = comfy.model_detection.model_config_from_unet_config(comfy.model_detection.detect_unet_config(sd, ""), sd)
    return _seeded_patcher(cfg, seed, std)


def tiny_wan_vae(seed: int = 0, std: float = 0.05) -> Any:
    """A `comfy.sd.VAE` holding a Wan 2.1 video VAE (causal, 4x in time, 8x in space, 16 channels) with seeded
    random weights, loaded from a state dict as VAELoader loads wan_2.1_vae.safetensors. Newer ComfyUIs read its
    width from the checkpoint (a narrow one here); 0.3.64 always builds the full width (96), so it gets that."""
    import torch
    import comfy.ldm.wan.vae
    import comfy.sd

    for dim in (16, 96):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = comfy.ldm.wan.vae.WanVAE(dim=dim, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                                              temperal_downsample=[False, True, True], dropout=0.0)
            sd = {k: torch.randn_like(v) * std for k, v in module.state_dict().items()}
        try:
            return comfy.sd.VAE(sd=sd)
        except RuntimeError:  # size mismatch: this ComfyUI builds the full-width VAE whatever the checkpoint says
            continue
    raise RuntimeError("could not build a Wan 2.1 VAE")


def wan_conditioning(seed: int = 1, tokens: int = 8, dim: int = 4096) -> tuple[list, list]:
    """Wan conditioning as its T5 text encoder node emits it: [1, tokens, 4096]."""
    import torch

    ctx = torch.randn(1, tokens, dim, generator=torch.Generator().manual_seed(seed))
    return [[ctx, {}]], [[torch.zeros_like(ctx), {}]]


def tiny_kl_vae(seed: int = 0, std: float = 0.05, z_channels: int = 16) -> Any:
    """A `comfy.sd.VAE` holding a tiny KL autoencoder (the FLUX VAE's architecture family, 16 latent channels,
    8x downscale; width 32, GroupNorm's minimum) with seeded random weights, built through VAE's `config` path
    (the state-dict path would build the full-size 128-channel one)."""
    import torch
    import comfy.ldm.models.autoencoder
    import comfy.sd

    ddconfig = {"double_z": True, "z_channels": z_channels, "resolution": 64, "in_channels": 3, "out_ch": 3, "ch": 32,
                "ch_mult": [1, 1, 1, 1], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}
    params = {"ddconfig": ddconfig, "embed_dim": z_channels}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = comfy.ldm.models.autoencoder.AutoencoderKL(**params)
        sd = {k: torch.randn_like(v) * std for k, v in module.state_dict().items()}
    vae = comfy.sd.VAE(sd=sd, config={"params": params})
    vae.latent_channels = z_channels  # the config path leaves the default 4; the checkpoint path reads it from sd
    return vae


def conditioning(seed: int = 1, dim: int = 32) -> tuple[list, list]:
    import torch

    ctx = torch.randn(1, 77, dim, generator=torch.Generator().manual_seed(seed))
    return [[ctx, {}]], [[torch.zeros_like(ctx), {}]]


def flux_conditioning(seed: int = 1, dim: int = 32, pooled: int = 32,
                      guidance: float | None = 3.5) -> tuple[list, list]:
    """FLUX conditioning as its text encoder node emits it: T5 tokens [1, T, dim] with the CLIP pooled vector
    [1, pooled] and, for dev, the distilled guidance value (FluxGuidance)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    ctx, vec = torch.randn(1, 16, dim, generator=g), torch.randn(1, pooled, generator=g)
    extra = {} if guidance is None else {"guidance": guidance}
    return ([[ctx, {"pooled_output": vec, **extra}]],
            [[torch.zeros_like(ctx), {"pooled_output": torch.zeros_like(vec), **extra}]])


# ---------------------------------------------------------------------------------------------- the server
class ComfyServer:
    """`python main.py --cpu` on 127.0.0.1 from a temporary copy of ComfyUI, with the pack linked into
    custom_nodes/ the way `styleid comfyui install` links it, or with `pack` (a folder, e.g. a clone of this
    repository) copied there as a git-clone install leaves it; `env` adds to the server's environment."""

    def __init__(self, root: Path, workdir: Path, python: str = sys.executable, pack: Path | None = None,
                 env: dict[str, str] | None = None):
        self.copy = workdir / "ComfyUI"
        shutil.copytree(root, self.copy, ignore=shutil.ignore_patterns(".git", "__pycache__", "user", "output", "temp"), symlinks=True)
        if pack is None:
            from styleid_guidance.integrations.comfyui.install import install

            self.pack = install(self.copy)  # as a user would: `styleid comfyui install COMFYUI_DIR`
        else:
            self.pack = self.copy / "custom_nodes" / pack.name
            shutil.move(str(pack), self.pack)
        (self.copy / "custom_nodes" / "styleid_test_nodes").symlink_to(TEST_NODES, target_is_directory=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "comfyui.log"
        env = dict(os.environ, DO_NOT_TRACK="1", HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1", STYLEID_OFFLINE="1",
                   OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **(env or {}))
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port), "--disable-auto-launch",
             "--database-url", f"sqlite:///{workdir / 'comfyui.db'}"],
            cwd=self.copy, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def import_line(self) -> str:
        """ComfyUI's "Import times" line for the pack's folder (marked "(IMPORT FAILED)" when it did not load)."""
        (line,) = [ln for ln in self.log().splitlines() if ln.rstrip().endswith(str(self.pack))]
        return line

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                self.get("/system_stats")
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.5)
        raise TimeoutError(f"ComfyUI did not start in {timeout:.0f} s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=30) as r:
            return json.loads(r.read())

    def post_prompt(self, prompt: dict) -> tuple[int, dict]:
        data = json.dumps({"prompt": prompt, "client_id": "styleid-tests"}).encode()
        req = urllib.request.Request(self.url + "/prompt", data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")

    def run(self, prompt: dict, timeout: float = 120.0) -> dict:
        """Post an API-format prompt and wait for its /history entry (status and outputs)."""
        code, body = self.post_prompt(prompt)
        if code != 200 or body.get("node_errors"):  # ComfyUI runs the valid outputs and lists the rest's errors
            return {"rejected": body}
        pid = body["prompt_id"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hist = self.get(f"/history/{pid}")
            if pid in hist and hist[pid].get("status", {}).get("completed") is not None and (
                    hist[pid]["status"].get("status_str") in ("success", "error")):
                return hist[pid]
            time.sleep(0.2)
        raise TimeoutError(f"prompt {pid} did not finish in {timeout:.0f} s:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
