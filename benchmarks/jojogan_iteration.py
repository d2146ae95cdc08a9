"""Cost of JoJoGAN's identity term: time per fine-tuning iteration and peak memory, side by side.

    python benchmarks/jojogan_iteration.py                 # CUDA: 1024 px; CPU: 256 px
    python benchmarks/jojogan_iteration.py --size 128 --iters 2

Runs the real `styleid_guidance.jojogan.finetune.finetune` loop for --id_loss none / arcface / styleid with
random weights of the real architectures (StyleGAN2 config-f, facexlib IR-SE50, CLIP ViT-L/14 + LoRA r8), and
`styleid-student`: the shape of a `styleid distill` student of that teacher (ViT-B/32, 768-d, random weights;
speed does not depend on them). Each mode runs in a fresh subprocess so peak memory is per mode. `--precision`
is the identity term's (auto = bf16 where the device runs it natively); the generators are fp32 in every mode.
Goal: the StyleID term ≤ 1.5x an identity-free iteration.

    python benchmarks/jojogan_iteration.py --modes none,styleid,styleid-student --iters 3
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from styleid_guidance.options import PRECISIONS

MODES = ("none", "arcface", "styleid", "styleid-student")


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(mode: str, size: int, iters: int, warmup: int, device: str, threads: int, precision: str = "auto") -> dict:
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from styleid_guidance.jojogan.stylegan2 import Discriminator, Generator
    from styleid_guidance.jojogan.finetune import FinetuneConfig, finetune
    from styleid_guidance.identity_losses import build_identity_loss

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    dev = torch.device(device)
    generator = Generator(size, 512, 8, 2).to(dev)
    discriminator = Discriminator(size, 2).to(dev)
    model = None
    if mode == "arcface":
        from styleid_guidance.baselines.arcface import build_arcface_backbone

        model = build_arcface_backbone()
    elif mode == "styleid":
        from styleid_guidance.encoder.model import StyleIDEncoder

        model = StyleIDEncoder.from_open_clip("ViT-L-14", pretrained=None)
    elif mode == "styleid-student":
        from styleid_guidance.train.distill.student import build_student

        model = build_student("ViT-B-32", None, 768).requires_grad_(False)
    # as JoJoGAN does: generator output is FFHQ-aligned, so the face region is known (no detector)
    from styleid_guidance.jojogan.align import ffhq_face_region

    kind = "styleid" if mode == "styleid-student" else mode
    identity_loss = build_identity_loss(kind, model=model, device=dev, crop="face", face_region=ffhq_face_region())
    latents = torch.randn(1, generator.n_latent, 512, device=dev) * 0.5 + generator.mean_latent(1000)
    targets = torch.rand(1, 3, size, size, device=dev) * 2 - 1

    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    base_alloc = torch.cuda.memory_allocated() if dev.type == "cuda" else 0
    base_rss = _rss_mb()
    stamps: list[float] = []
    start = time.perf_counter()
    config = FinetuneConfig(max_steps=warmup + iters, seed=0)
    finetune(generator, discriminator, latents, targets, config, identity_loss=identity_loss,
             progress=lambda i, n, losses: stamps.append(time.perf_counter()), show_progress=False, precision=precision)
    times = [b - a for a, b in zip([start] + stamps[:-1], stamps)][warmup:]
    import statistics

    from styleid_guidance.devices import resolve_precision

    result = {"mode": mode, "size": size, "device": device, "s_per_iter": statistics.median(times), "iters": len(times),
              "precision": resolve_precision(precision, dev).name}
    if dev.type == "cuda":
        result["peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
        result["extra_mb"] = (torch.cuda.max_memory_allocated() - base_alloc) / 2**20
    else:
        result["peak_mb"] = _peak_rss_mb()
        result["extra_mb"] = _peak_rss_mb() - base_rss
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=None, help="generator size (default: 1024 on CUDA, 256 on CPU)")
    p.add_argument("--iters", type=int, default=3, help="timed iterations per mode")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="the identity term's precision (default: auto = bf16 where native)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    import torch

    from styleid_guidance.devices import resolve_device

    device = str(resolve_device(args.device))
    size = args.size or (1024 if device.startswith("cuda") else 256)
    if args.worker:
        print(json.dumps(worker(args.worker, size, args.iters, args.warmup, device, args.threads, args.precision)))
        return 0

    results = {}
    for mode in args.modes.split(","):
        cmd = [sys.executable, __file__, "--worker", mode, "--size", str(size), "--iters", str(args.iters),
               "--warmup", str(args.warmup), "--device", device, "--threads", str(args.threads), "--precision", args.precision]
        out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        if out.returncode != 0:
            print(out.stderr[-2000:], file=sys.stderr)
            return 1
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"  {mode}: {results[mode]['s_per_iter']:.3f} s/iter", file=sys.stderr)

    mem = "GPU peak allocated" if device.startswith("cuda") else "peak RSS"
    precision = next(iter(results.values()))["precision"]
    print(f"JoJoGAN iteration cost, {size} px, {device}, median of {args.iters} timed iterations after {args.warmup} "
          f"warm-up; identity term precision {args.precision} → {precision}")
    print(f"{'id_loss':<16} {'s/iter':>8} {'x none':>7} {mem + ' MB':>24} {'x none':>7} {'extra MB':>9}")
    ref = results.get("none")
    for mode, r in results.items():
        t_ratio = r["s_per_iter"] / ref["s_per_iter"] if ref else float("nan")
        m_ratio = r["peak_mb"] / ref["peak_mb"] if ref else float("nan")
        print(f"{mode:<16} {r['s_per_iter']:>8.3f} {t_ratio:>7.2f} {r['peak_mb']:>24.0f} {m_ratio:>7.2f} {r['extra_mb']:>9.0f}")
    for mode in ("styleid", "styleid-student"):
        if ref and mode in results:
            ratio = results[mode]["s_per_iter"] / ref["s_per_iter"]
            print(f"{mode}/none = {ratio:.2f}x: {'meets' if ratio <= 1.5 else 'misses'} the <= 1.5x goal ({size} px, {device})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
