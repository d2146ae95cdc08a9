"""What identity guidance costs: guided / unguided wall time and peak memory, per pipeline, side by side.

For each pipeline the same stylizer call (same seed, same steps, guidance on every step) runs unguided and
with guidance in four set-ups: x0 mode with the pipeline's VAE or a tiny AutoencoderTiny decoder, and x_t mode
(through the denoiser) with either decoder. Runs are interleaved round by round, so background load hits all
alike; medians are reported. Peak memory: CUDA max_memory_allocated; on CPU the process's peak RSS (sampled
every 5 ms, heap trimmed between runs), both including the loaded models, plus what the run added on top.

    python benchmarks/guidance_overhead.py                         # CPU: random full-size SD1.5, 256 px, 4 steps
    python benchmarks/guidance_overhead.py --device cuda --size 512 --steps 25 --rounds 3
    python benchmarks/guidance_overhead.py --profile tiny --pipelines ip_adapter instantid infiniteyou   # smoke
    python benchmarks/guidance_overhead.py --profile real --device cuda   # released weights (Hub ids / cache)
    python benchmarks/guidance_overhead.py --pipelines kontext --setups x0-tiny,x0-vae,xt-vae   # FLUX.1 Kontext, reduced

Video pipelines: `--video` adds the tiny AnimateDiff and Wan 2.x pipelines' guided / unguided cost (the measurement of
benchmarks/video_guidance.py, which also times the Wan VAE's per-step frame decode).

Goals: x0 mode with the tiny decoder ≤ 1.2x the unguided time in this CPU benchmark and ≤ 1.3x at SD1.5 512 px
on a GPU, at most half the overhead of x_t mode. Profiles: "full" = the real architectures with random weights
(SD1.5 IP-Adapter FaceID-Plus, StyleID ViT-L/14 encoder, TAESD-sized tiny decoder; FLUX.1 Kontext with the real
16-channel FLUX VAE and a reduced transformer, width 1024 and 2 + 4 blocks, a TAEF1-sized decoder), "tiny" = every pipeline's
`.tiny()`, "real" = every pipeline's `.from_pretrained()` defaults.

Precision: `--precision` is the guidance's (decode + identity model, the callback's `precision`; auto = bf16 where
the device runs it natively); the pipeline runs at the same dtype in every run (fp32 on CPU, fp16 on CUDA), so
the ratios compare like with like. `--identity student` guides with a ViT-B/32-sized student of the width a
`styleid distill` student of the ViT-L/14 teacher has (768), random weights: what a distilled student costs.

    python benchmarks/guidance_overhead.py --setups unguided,x0-tiny --identity student --rounds 3
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import statistics
import sys
import threading
import time
from pathlib import Path

import psutil
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from styleid_guidance.devices import resolve_device  # noqa: E402
from styleid_guidance.errors import StyleIDError, run_cli  # noqa: E402
from styleid_guidance.options import OFFLINE_DETECTOR, PRECISIONS  # noqa: E402
from styleid_guidance.pipelines import STYLIZERS, stylizer_names  # noqa: E402

SETUPS = (("unguided", None, None), ("x0 + VAE", "x0", "vae"), ("x0 + tiny decoder", "x0", "tiny"),
          ("x_t + VAE", "xt", "vae"), ("x_t + tiny decoder", "xt", "tiny"))
SETUP_KEYS = {"unguided": "unguided", "x0-vae": "x0 + VAE", "x0-tiny": "x0 + tiny decoder", "xt-vae": "x_t + VAE",
              "xt-tiny": "x_t + tiny decoder"}


class PeakMemory:
    """Peak memory of a block: CUDA allocator peak, or sampled process RSS above the starting level."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak = 0
        self.added = 0

    def __enter__(self):
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            return self
        _trim_heap()
        self.proc = psutil.Process()
        self.base = self.proc.memory_info().rss
        self.peak_rss = self.base
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak_rss = max(self.peak_rss, self.proc.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated(self.device)  # includes the resident models
        else:
            self.running = False
            self.thread.join()
            self.peak = self.peak_rss
        self.added = self.peak - self.base  # what the run needed on top of the loaded models
        return False


def _trim_heap() -> None:
    """Give freed heap back to the OS so the next run's RSS baseline is honest (glibc only)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def build_stylizer(name: str, profile: str, device: torch.device, size: int | None = None):
    """Any registered image stylizer (`STYLIZERS`) with --profile tiny / real; --profile full has a random
    full-size (or reduced) set-up for the stylizers in FULL_SIZE only."""
    if profile == "tiny":
        return STYLIZERS[name].load().tiny(device=str(device))
    if profile == "real":
        return STYLIZERS[name].load().from_pretrained(device=str(device))
    if name not in FULL_SIZE:
        raise StyleIDError(f"--profile full covers {' and '.join(FULL_SIZE)} only ({name}: its full-size random model does "
                           "not fit a CPU run); use --profile tiny or real")
    return FULL_SIZE[name](device, size)


def reduced_kontext_stylizer(device: torch.device, size: int):
    """FLUX.1 Kontext on diffusers' own pipeline: the real FLUX VAE, a reduced random transformer (full-size FLUX,
    12B parameters, does not fit this benchmark's CPUs; shapes in styleid_guidance.tiny.kontext.REDUCED_TRANSFORMER)."""
    from diffusers import FluxKontextPipeline

    from styleid_guidance.pipelines.kontext import KontextStylizer
    from styleid_guidance.tiny.face_embedder import TinyFaceEmbedder
    from styleid_guidance.tiny.kontext import random_kontext_components

    pipe = FluxKontextPipeline(**random_kontext_components())
    pipe.to(device, torch.float16 if device.type == "cuda" else torch.float32)
    pipe.set_progress_bar_config(disable=True)
    # 128 text tokens (Kontext's default is 512): the text stream is the same in every set-up
    return KontextStylizer(pipe, TinyFaceEmbedder(detector=OFFLINE_DETECTOR), size=size,
                           call_defaults={"max_sequence_length": 128, "_auto_resize": False})


def random_ip_adapter_stylizer(device: torch.device, size: int | None = None):
    """SD1.5 + IP-Adapter FaceID-Plus at full size with random weights; the CLIP image encoder keeps ViT-H's
    width (1280) but 2 layers, as it runs once per call, not per step."""
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from styleid_guidance.pipelines.ip_adapter import IPAdapterStylizer, load_ip_adapter
    from styleid_guidance.tiny.face_embedder import TinyFaceEmbedder
    from styleid_guidance.tiny.rng import seeded
    from styleid_guidance.tiny.sd import random_sd15_components, tiny_ip_adapter_state_dict

    pipe = StableDiffusionPipeline(**random_sd15_components())
    load_ip_adapter(pipe, tiny_ip_adapter_state_dict(pipe.unet, "faceid-plus", clip_hidden_dim=1280, lora_rank=128, resampler_heads=12))
    with seeded(0):
        encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=1280, intermediate_size=5120, num_attention_heads=16,
                                                                 num_hidden_layers=2, image_size=224, patch_size=14, projection_dim=1024))
    from transformers import CLIPImageProcessor

    pipe.register_modules(image_encoder=encoder.eval(), feature_extractor=CLIPImageProcessor())
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    pipe.to(device, dtype)
    pipe.set_progress_bar_config(disable=True)
    return IPAdapterStylizer(pipe, "faceid-plus", TinyFaceEmbedder(detector=OFFLINE_DETECTOR), faceid_v2=True)


# --profile full: random weights in the real architectures, for the stylizers whose full size fits a CPU run
FULL_SIZE = {"ip_adapter": random_ip_adapter_stylizer, "kontext": reduced_kontext_stylizer}


def build_identity_loss(profile: str, face, device: torch.device, identity: str = "vit-l-14"):
    from styleid_guidance import StyleIDEncoder, StyleIDLoss

    if identity == "student":  # the shape `styleid distill` gives a ViT-L/14 teacher's student (speed only)
        from styleid_guidance.train.distill.student import build_student

        encoder = build_student("ViT-B-32", None, 768).requires_grad_(False)
    elif identity != "vit-l-14":
        encoder = StyleIDEncoder.from_pretrained(identity)  # e.g. a distilled student's folder
    elif profile == "tiny":
        encoder = StyleIDEncoder.from_open_clip("test-tiny", pretrained=None)
    elif profile == "real":
        encoder = StyleIDEncoder.from_pretrained("kwanY/styleid")
    else:
        encoder = StyleIDEncoder.from_open_clip("ViT-L-14", pretrained=None)  # the real architecture, random weights
    return StyleIDLoss(encoder.to(device).eval(), reference=face, crop="center")


def tiny_decoder_for(stylizer, profile: str, device: torch.device):
    """A TAESD-architecture AutoencoderTiny with the pipeline's latent channels (random unless --profile real)."""
    from diffusers import AutoencoderTiny

    pipe = stylizer.pipe
    channels = pipe.vae.config.latent_channels
    if profile == "tiny":
        from styleid_guidance.tiny.sd import tiny_taesd

        decoder = tiny_taesd(latent_channels=channels)
    elif profile == "real":
        repo = {4: "madebyollin/taesdxl" if "XL" in type(pipe).__name__ else "madebyollin/taesd", 16: "madebyollin/taef1"}[channels]
        decoder = AutoencoderTiny.from_pretrained(repo)
    else:
        decoder = AutoencoderTiny(latent_channels=channels)
    dtype = next(pipe.vae.parameters()).dtype
    return decoder.to(device, dtype).eval().requires_grad_(False)


def bench_pipeline(name: str, args, device: torch.device, face) -> list[tuple[str, float, tuple[int, int]]]:
    from styleid_guidance.integrations import IdentityGuidanceCallback

    print(f"\n== {name} ({args.profile}) == building…", flush=True)
    stylizer = build_stylizer(name, args.profile, device, args.size)
    loss = build_identity_loss(args.profile, face, device, args.identity)
    tiny = tiny_decoder_for(stylizer, args.profile, device)
    size = {} if args.size is None else {"height": args.size, "width": args.size}
    call = dict(strength_level=args.level, seed=0, num_inference_steps=args.steps, **size)
    callbacks = {label: None if mode is None else IdentityGuidanceCallback(
        loss, scale=0.05, mode=mode, start=0.0, end=1.0, every=1, guidance_decoder=tiny if dec == "tiny" else None,
        precision=args.precision)
        for label, mode, dec in SETUPS if label in args.setups}
    stylizer(face, "Portrait of a Pixar character", identity_guidance=None, **{**call, "num_inference_steps": 1})  # warm-up
    times = {label: [] for label in callbacks}
    peaks = {label: (0, 0) for label in callbacks}
    for r in range(args.rounds):
        for label, cb in callbacks.items():
            with PeakMemory(device) as mem:
                t0 = time.perf_counter()
                stylizer(face, "Portrait of a Pixar character", identity_guidance=cb, **call)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times[label].append(time.perf_counter() - t0)
            peaks[label] = max(peaks[label], (mem.peak, mem.added))
            print(f"  round {r + 1}/{args.rounds} {label:<20} {times[label][-1]:8.2f} s  peak {mem.peak / 2**20:8.0f} MiB "
                  f"(+{mem.added / 2**20:.0f})", flush=True)
    del stylizer
    gc.collect()
    return [(label, statistics.median(times[label]), peaks[label]) for label in callbacks]


def report(name: str, rows: list[tuple[str, float, tuple[int, int]]], device: torch.device) -> None:
    base_t, base_m = rows[0][1], max(rows[0][2][0], 1)
    mem_what = "CUDA peak allocated" if device.type == "cuda" else "peak RSS"
    print(f"\n{name}: median wall time and {mem_what} (models included; +MiB = on top of them), ratios to unguided")
    print(f"  {'set-up':<20} {'time s':>8} {'time x':>7} {'peak MiB':>9} {'+MiB':>7} {'mem x':>7}")
    for label, t, (m, added) in rows:
        print(f"  {label:<20} {t:8.2f} {t / base_t:7.2f} {m / 2**20:9.0f} {added / 2**20:7.0f} {m / base_m:7.2f}")
    by = {label: t for label, t, _ in rows}
    if "x0 + tiny decoder" in by and "x_t + VAE" in by:
        print(f"  overhead x0+tiny / overhead x_t+VAE = {(by['x0 + tiny decoder'] - base_t) / (by['x_t + VAE'] - base_t):.2f}"
              f"  (goal <= 0.5)")
    if "x0 + tiny decoder" in by:
        ratio = by["x0 + tiny decoder"] / base_t
        goal = 1.3 if device.type == "cuda" else 1.2
        where = "at SD1.5 512 px on a GPU" if device.type == "cuda" else "in this CPU benchmark"
        print(f"  x0+tiny time ratio = {ratio:.2f}  ({'meets' if ratio <= goal else 'misses'} the <= {goal} goal {where})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="guidance_overhead", description=__doc__.split("\n")[0])
    parser.add_argument("--pipelines", nargs="+", default=["ip_adapter"],
                        choices=stylizer_names("image"))
    parser.add_argument("--profile", choices=("full", "tiny", "real"), default="full")
    parser.add_argument("--device", default=None, help="cuda / cpu (default: cuda when available)")
    parser.add_argument("--size", type=int, default=None, help="image size in px (default: 512 on CUDA, 256 on CPU; tiny: its own)")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: 25 on CUDA, 4 on CPU)")
    parser.add_argument("--level", type=int, default=4, help="strength level (sets CFG and adapter scale)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default: 3 on CUDA, 1 on CPU)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="the guidance's precision (decode + identity model); the pipeline's dtype is the same in every run")
    parser.add_argument("--identity", default="vit-l-14",
                        help="identity encoder: vit-l-14 (StyleID's shape), student (a distilled ViT-B/32-sized student's "
                             "shape) or a StyleID encoder folder")
    parser.add_argument("--setups", default=",".join(SETUP_KEYS), help=f"comma-separated subset of {', '.join(SETUP_KEYS)}")
    parser.add_argument("--video", action="store_true",
                        help="also the video pipelines: tiny AnimateDiff and Wan 2.x (T2V, I2V, 2.2 TI2V), 17 frames at "
                             "64 px, 2 latent frames per guided step and all of them, test-tiny identity model")
    args = parser.parse_args(argv)
    try:
        args.setups = ["unguided"] + [SETUP_KEYS[k.strip()] for k in args.setups.split(",") if k.strip() and k.strip() != "unguided"]
    except KeyError as err:
        raise StyleIDError(f"--setups: unknown {err}; choose from {', '.join(SETUP_KEYS)}") from None
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = device.type == "cuda"
    if args.size is None and args.profile != "tiny":
        args.size = 512 if cuda else 256
    args.steps = args.steps or (25 if cuda else 4)
    args.rounds = args.rounds or (3 if cuda else 1)
    from styleid_guidance.files.images import load_image

    face = load_image(Path(__file__).resolve().parents[1] / "examples" / "faces" / "astronaut.jpg")
    from styleid_guidance.devices import cpu_name, resolve_precision

    print(f"device {device} ({torch.cuda.get_device_name(device) if cuda else f'{cpu_name()}, {torch.get_num_threads()} threads'}), "
          f"profile {args.profile}, size {args.size or 'default'}, {args.steps} steps, guidance on every step, "
          f"level {args.level}, {args.rounds} round(s); identity {args.identity}; guidance precision {args.precision} → "
          f"{resolve_precision(args.precision, device).name}; pipeline dtype {'fp16' if cuda else 'fp32'} in every run")
    results = {name: bench_pipeline(name, args, device, face) for name in args.pipelines}
    for name, rows in results.items():
        report(name, rows, device)
    if args.video:
        import video_guidance
        from styleid_guidance import StyleIDEncoder, StyleIDLoss

        video_args = argparse.Namespace(frames=17, frames_per_step=2, size=64, steps=args.steps, rounds=args.rounds)
        loss = StyleIDLoss(StyleIDEncoder.from_open_clip("test-tiny", pretrained=None, device=device), reference=face,
                           crop="center")
        video_guidance.bench_pipelines(video_args, device, loss, face)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="guidance_overhead"))
