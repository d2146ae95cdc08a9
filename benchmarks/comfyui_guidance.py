"""What StyleIDGuidance costs inside ComfyUI's own sampler: guided / unguided wall time, one run, both identity models.

The StyleID ComfyUI node pack patches a MODEL with a post-CFG function (integrations/comfyui/guidance.py). This
times `comfy.sample.sample` (what the KSampler node calls) on a full-size SD1.5 UNet with random weights at 256 px,
4 Euler steps, CFG 5, guidance on every step through a random-weight TAESD decoder, with (a) StyleID's ViT-L/14
tower and (b) a distilled student of the shape `styleid distill` gives it (ViT-B/32 width 768), both random and
built from their configs (no download; the helpers of benchmarks/guidance_overhead.py). Runs are interleaved
round by round so background load hits all alike; medians are reported.

    python benchmarks/comfyui_guidance.py                       # COMFYUI_ROOT or ../shared/vendor/ComfyUI
    python benchmarks/comfyui_guidance.py --rounds 3 --precision fp32

Goal: ≤ 1.5x the unguided time with the student on a CPU.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from guidance_overhead import build_identity_loss  # noqa: E402

from styleid_guidance.devices import cpu_name  # noqa: E402
from styleid_guidance.errors import StyleIDError, run_cli  # noqa: E402
from styleid_guidance.options import PRECISIONS  # noqa: E402

# SD1.5's UNet as ComfyUI's model detection reads it from a v1-5 checkpoint
SD15_UNET = {"image_size": 32, "in_channels": 4, "out_channels": 4, "model_channels": 320, "num_res_blocks": [2, 2, 2, 2],
             "channel_mult": [1, 2, 4, 4], "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0], "transformer_depth_middle": 1,
             "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], "context_dim": 768,
             "use_linear_in_transformer": False, "adm_in_channels": None, "use_temporal_attention": False,
             "use_spatial_transformer": True, "legacy": False, "num_head_channels": -1, "use_temporal_resblock": False}




def import_comfyui(root: Path) -> None:
    if not (root / "comfy").is_dir():
        raise StyleIDError(f"{root}: no ComfyUI there; set COMFYUI_ROOT or pass --comfyui")
    sys.path.insert(0, str(root))
    import comfy.options

    comfy.options.enable_args_parsing(False)
    import comfy.cli_args

    comfy.cli_args.args.cpu = True


def _random_init(module: torch.nn.Module, std: float = 0.02) -> None:
    """ComfyUI's ops leave weights uninitialised: small normal weights, unit norm scales, zero biases."""
    for name, p in module.named_parameters():
        if p.ndim >= 2:
            p.data.normal_(0.0, std)
        elif name.endswith("weight"):
            p.data.fill_(1.0)
        else:
            p.data.zero_()


def random_sd15():
    import comfy.model_patcher
    import comfy.supported_models

    cfg = comfy.supported_models.SD15(dict(SD15_UNET))
    cfg.set_inference_dtype(torch.float32, None)
    cpu = torch.device("cpu")
    torch.manual_seed(0)
    base = cfg.get_model({}, device=cpu)
    _random_init(base.diffusion_model)
    return comfy.model_patcher.ModelPatcher(base, load_device=cpu, offload_device=cpu)


def random_taesd():
    import comfy.sd
    import comfy.taesd.taesd

    torch.manual_seed(1)
    taesd = comfy.taesd.taesd.TAESD()
    sd = {k: torch.randn_like(v) * 0.05 for k, v in taesd.state_dict().items()}
    sd["vae_scale"], sd["vae_shift"] = torch.tensor(0.18215), torch.tensor(0.0)
    return comfy.sd.VAE(sd=sd)


def styleid_model(identity: str, face, precision: str):
    from styleid_guidance.identity_losses import StyleIDLoss
    from styleid_guidance.integrations.comfyui.models import StyleIDModel

    encoder = build_identity_loss("full", face, torch.device("cpu"), identity).model
    common = dict(detector="mtcnn", precision=precision)
    return StyleIDModel(identity, "styleid", StyleIDLoss(encoder, crop="face", **common), StyleIDLoss(encoder, crop="center", **common),
                        "mtcnn", precision)


def main(argv=None) -> int:
    default_root = os.environ.get("COMFYUI_ROOT") or str(HERE.parents[1] / "shared" / "vendor" / "ComfyUI")
    parser = argparse.ArgumentParser(prog="comfyui_guidance", description=__doc__.split("\n")[0])
    parser.add_argument("--comfyui", default=default_root, help="ComfyUI folder (default: %(default)s)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--scale", type=float, default=0.05)
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="the guidance's (decode + identity model); the UNet runs fp32 in every run")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import_comfyui(Path(args.comfyui))
    import comfy.sample

    from styleid_guidance.devices import resolve_precision
    from styleid_guidance.files.images import load_image
    from styleid_guidance.integrations.comfyui.guidance import patch_model

    face = load_image(HERE.parent / "examples" / "faces" / "astronaut.jpg")
    reference = (torch.from_numpy(__import__("numpy").asarray(face, "float32") / 255.0)).permute(2, 0, 1)[None]
    print(f"CPU {cpu_name()}, {torch.get_num_threads()} threads; ComfyUI {args.comfyui}; SD1.5 UNet (random) at {args.size} px, "
          f"{args.steps} Euler steps, CFG 5, TAESD (random) guidance decoder; guidance precision {args.precision} → "
          f"{resolve_precision(args.precision, torch.device('cpu')).name}; {args.rounds} round(s)", flush=True)
    model, vae = random_sd15(), random_taesd()
    setups = {"unguided": (model, None)}
    for identity, label in (("vit-l-14", "ViT-L/14"), ("student", "student")):
        patched, fn = patch_model(model, vae, styleid_model(identity, face, args.precision), reference, args.scale, 0.0, 1.0, 1)
        setups[label] = (patched, fn)
    lat = args.size // 8
    ctx = torch.randn(1, 77, 768, generator=torch.Generator().manual_seed(0))
    positive, negative = [[ctx, {}]], [[torch.zeros_like(ctx), {}]]

    def run(m, steps):
        noise = torch.randn(1, 4, lat, lat, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            return comfy.sample.sample(m, noise, steps, 5.0, "euler", "normal", positive, negative, torch.zeros(1, 4, lat, lat),
                                       seed=0, disable_pbar=True)

    for m, _ in setups.values():  # warm-up: one step each (allocator, kernels, face detection of the reference)
        run(m, 1)
    # wall time is what users wait; process CPU time (all threads) is what the work costs, and barely moves when
    # other processes share the cores, so both are reported
    wall = {label: [] for label in setups}
    cpu = {label: [] for label in setups}
    for r in range(args.rounds):
        for label, (m, fn) in setups.items():
            if fn is not None:
                fn.last_losses.clear()
            t0, c0 = time.perf_counter(), time.process_time()
            out = run(m, args.steps)
            wall[label].append(time.perf_counter() - t0)
            cpu[label].append(time.process_time() - c0)
            guided = "" if fn is None else f", {len(fn.last_losses)} guided steps"
            print(f"  round {r + 1}/{args.rounds} {label:<9} wall {wall[label][-1]:8.2f} s  cpu {cpu[label][-1]:8.2f} s "
                  f"(finite: {bool(torch.isfinite(out).all())}{guided})", flush=True)
    base_w, base_c = statistics.median(wall["unguided"]), statistics.median(cpu["unguided"])
    print(f"\nmedians, ratio to unguided (CPU {cpu_name()}, {torch.get_num_threads()} threads, load average "
          f"{os.getloadavg()[0]:.1f} at the end):")
    for label in setups:
        w, c = statistics.median(wall[label]), statistics.median(cpu[label])
        print(f"  {label:<9} wall {w:8.2f} s {w / base_w:5.2f}x   cpu {c:8.2f} s {c / base_c:5.2f}x")
    for label in ("student", "ViT-L/14"):
        w, c = statistics.median(wall[label]) / base_w, statistics.median(cpu[label]) / base_c
        goal = f" ({'meets' if w <= 1.5 else 'misses'} the <= 1.5x goal)" if label == "student" else ""
        print(f"{label} ratio: wall {w:.2f}x, cpu {c:.2f}x{goal}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="comfyui_guidance"))
