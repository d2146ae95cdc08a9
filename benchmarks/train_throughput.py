"""LoRA training throughput and peak memory, with/without gradient checkpointing and mixed precision.

    python benchmarks/train_throughput.py --device cuda          # paper shape: ViT-L-14, 56 × 2 at 224 px
    python benchmarks/train_throughput.py                        # on a CPU: ViT-B-32, 4 × 2, 3 steps (fits in 24 GB)

One full StyleID training step as the trainer runs it (frozen branch without grad, adapted branch,
L_ang + L_scon + L_reg, backward, AdamW) on random pixels with random backbone weights (no download;
speed does not depend on the weights). Each configuration runs in its own subprocess so its peak
memory is its own: CUDA `max_memory_allocated`, or on CPU the growth of peak RSS over the
post-build RSS. Results are printed side by side with ratios to the fp32 / no-checkpointing row.

Mixed precision ("amp") is accelerate's: bf16 on a CPU and on CUDA GPUs that have it, fp16 on older GPUs. Whether
bf16 is native is detected (AMX / AVX512-BF16 on x86, the BF16 extension on arm64, compute capability ≥ 8 on
CUDA) and printed with the results: where it is not, torch emulates bf16 and the amp rows are slower than fp32
(measured, not assumed).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

CONFIGS = {"fp32": ("no", False), "fp32+ckpt": ("no", True), "amp": ("amp", False), "amp+ckpt": ("amp", True)}


def _rss_mb() -> float:
    # current RSS from /proc (Linux); ru_maxrss is the peak
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def run_one(args: argparse.Namespace) -> dict:
    import torch
    from accelerate import Accelerator

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from styleid_guidance.encoder.model import StyleIDEncoder
    from styleid_guidance.losses import StyleIDObjective
    from styleid_guidance.train.trainer import TrainStep

    precision, ckpt = CONFIGS[args.one]
    cuda = args.device == "cuda"
    if precision == "amp":
        precision = "bf16" if (not cuda or torch.cuda.is_bf16_supported()) else "fp16"
    torch.manual_seed(0)
    acc = Accelerator(mixed_precision=precision, cpu=not cuda)
    encoder = StyleIDEncoder.from_open_clip(args.backbone, pretrained=None, lora_rank=args.lora_rank)
    if ckpt:
        encoder.set_grad_checkpointing(True)
    objective = StyleIDObjective(encoder.embedding_dim, args.num_classes)
    module = TrainStep(encoder, objective)
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=2e-4)
    model, optimizer = acc.prepare(module, optimizer)
    batch = args.ids_per_batch * args.images_per_id
    size = args.image_size or encoder.image_size
    pixels = torch.randn(batch, 3, size, size, device=acc.device)
    labels = torch.arange(args.ids_per_batch, device=acc.device).repeat_interleave(args.images_per_id)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    base_rss = _rss_mb()

    def step() -> None:
        out = model(pixels, labels)
        acc.backward(out["loss"])
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base_rss
    return {"config": args.one, "precision": precision, "images_per_s": batch * args.steps / elapsed,
            "step_s": elapsed / args.steps, "peak_mb": peak}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # the paper's shape on a GPU; on a CPU a shape that fits in memory and minutes (ViT-L-14 at 56 × 2 needs > 24 GB)
    p.add_argument("--backbone", default=None, help="open_clip architecture, random weights (default: ViT-L-14 on CUDA, "
                                                    "ViT-B-32 on a CPU)")
    p.add_argument("--ids-per-batch", type=int, default=None, help="default: 56 on CUDA (the paper), 4 on a CPU")
    p.add_argument("--images-per-id", type=int, default=2)
    p.add_argument("--image-size", type=int, default=None, help="default: the backbone's (224 for ViT-L-14)")
    p.add_argument("--lora-rank", type=int, default=8)
    p.add_argument("--num-classes", type=int, default=4073, help="angular-head classes (StyleBench-S: 4073)")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default: 10 on CUDA, 3 on a CPU)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", choices=("cuda", "cpu"), default=None, help="default: cuda if available")
    p.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated subset of {', '.join(CONFIGS)}")
    p.add_argument("--threads", type=int, default=None, help="CPU threads per run (default: torch's)")
    p.add_argument("--one", choices=CONFIGS, help=argparse.SUPPRESS)  # internal: run one config in this process
    args = p.parse_args()
    if args.device is None:
        from styleid_guidance.devices import resolve_device

        args.device = resolve_device(None).type
    cuda = args.device == "cuda"
    args.backbone = args.backbone or ("ViT-L-14" if cuda else "ViT-B-32")
    args.ids_per_batch = args.ids_per_batch or (56 if cuda else 4)
    args.steps = args.steps or (10 if cuda else 3)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(run_one(args)))
        return 0

    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        p.error(f"--configs: unknown {', '.join(unknown)}; choose from {', '.join(CONFIGS)}")
    batch = args.ids_per_batch * args.images_per_id
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from styleid_guidance.devices import bf16_native, cpu_description

    native = bf16_native(args.device)
    print(f"StyleID LoRA training step: {args.backbone} (random weights), batch {batch} = {args.ids_per_batch} ids × "
          f"{args.images_per_id}, LoRA rank {args.lora_rank}, device {args.device}, {args.steps} timed steps", flush=True)
    print(f"bf16 on this {args.device}: {'native' if native else 'EMULATED (no native bf16 matrix instructions)'}"
          + ("" if args.device == "cuda" else f"; CPU {cpu_description()}"), flush=True)
    mem = "peak GPU MB" if args.device == "cuda" else "peak RSS growth MB"
    print(f"{'config':10s} {'precision':>9s} {'images/s':>10s} {'s/step':>8s} {mem:>19s} {'speed×':>7s} {'memory×':>8s}", flush=True)
    ref = None
    for config in configs:
        cmd = [sys.executable, __file__, *sys.argv[1:], "--device", args.device, "--one", config]
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            tail = run.stderr.strip().splitlines()[-1] if run.stderr.strip() else "no output"
            print(f"{config:10s}  failed: {tail}", flush=True)
            continue
        r = json.loads(run.stdout.strip().splitlines()[-1])
        ref = ref or r  # ratios are relative to the first configuration that ran (fp32 by default)
        mem_ratio = r["peak_mb"] / ref["peak_mb"] if ref["peak_mb"] > 0 else float("nan")
        label = r["precision"] + ("" if r["precision"] == "no" or native or r["precision"] == "fp16" and args.device == "cuda" else "*")
        print(f"{r['config']:10s} {label:>9s} {r['images_per_s']:10.2f} {r['step_s']:8.3f} {r['peak_mb']:19.0f} "
              f"{r['images_per_s'] / ref['images_per_s']:7.2f} {mem_ratio:8.2f}", flush=True)
    if ref is None:
        return 1
    if not native:
        print("* emulated on this device: slower than fp32 here; on CPUs with AMX / AVX512-BF16 it is the fast path", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
