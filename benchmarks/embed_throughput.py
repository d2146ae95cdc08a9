"""Embedding throughput: `StyleIDEncoder.embed` in fp32 and in bf16 vs the authors' quick-start path, same weights.

The quick-start path is transformers `CLIPModel.get_image_features` on `CLIPImageProcessor` output (the image
half of `CLIPProcessor`; the tokenizer is irrelevant to images), in fp32 as the model card runs it. All paths
read the same folder of JPEGs from disk, so decoding is included. Weights are random but the architecture is
the real one (ViT-L/14 at 224 px by default), so the timing is representative. Runs are interleaved (A, B, C,
A, B, C, ...) and medians are reported, so background load hits all alike.

Printed side by side from one run: images/s of each path, the ratios ours-fp32 / quick-start and
ours-bf16 / quick-start (and what `--precision auto` picks on this machine), and the cosine of our bf16
embeddings to our fp32 ones (and of ours to the quick-start's). Where the CPU has no native bf16 (no AMX /
AVX512-BF16), torch emulates it, many times slower than fp32: the bf16 path is then timed on a few images only
(`--emulated-images`) so the run stays short, and `auto` picks fp32.

    python benchmarks/embed_throughput.py                       # CPU: ViT-L/14, 32 images, batch 16
    python benchmarks/embed_throughput.py --device cuda         # GPU: bf16 autocast + GPU-side preprocessing
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ARCHS = {
    # name: (hidden, layers, heads, patch, image_size, projection)
    "vit-l-14": (1024, 24, 16, 14, 224, 768),
    "vit-b-16": (768, 12, 12, 16, 224, 512),
    "vit-b-32": (768, 12, 12, 32, 224, 512),
}


def make_checkpoint(folder: Path, arch: str) -> None:
    from transformers import CLIPConfig, CLIPModel

    hidden, layers, heads, patch, size, proj = ARCHS[arch]
    cfg = CLIPConfig(
        text_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2, vocab_size=1000),
        vision_config=dict(hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers, num_attention_heads=heads,
                           patch_size=patch, image_size=size, hidden_act="quick_gelu"),
        projection_dim=proj,
    )
    torch.manual_seed(0)
    CLIPModel(cfg).save_pretrained(folder)


def make_images(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """Photo-sized JPEGs (varied sizes) with smooth content, like real portraits."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        h, w = int(rng.integers(480, 900)), int(rng.integers(480, 900))
        base = rng.random((h // 16 + 1, w // 16 + 1, 3))
        img = Image.fromarray((base * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC)
        path = folder / f"img_{i:03d}.jpg"
        img.save(path, quality=90)
        paths.append(path)
    return paths


def run_ours(encoder, paths, batch_size, precision):
    with torch.inference_mode():
        return encoder.embed([str(p) for p in paths], crop="center", batch_size=batch_size, precision=precision)


def run_quickstart(model, processor, paths, batch_size, device):
    out = []
    with torch.inference_mode():
        for i in range(0, len(paths), batch_size):
            images = [Image.open(p).convert("RGB") for p in paths[i : i + batch_size]]
            inputs = processor(images=images, return_tensors="pt").to(device)
            feats = model.get_image_features(**inputs)
            if not isinstance(feats, torch.Tensor):
                feats = feats.pooler_output
            out.append(torch.nn.functional.normalize(feats.float(), dim=-1))
    return torch.cat(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=sorted(ARCHS), default="vit-l-14")
    parser.add_argument("--num-images", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default=None, help="default: cuda when available (devices.resolve_device)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--emulated-images", type=int, default=4,
                        help="images the bf16 path times where bf16 is emulated (no native bf16 on this device)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from transformers import CLIPImageProcessor, CLIPModel

    from styleid_guidance import StyleIDEncoder
    from styleid_guidance.devices import auto_precision, bf16_native, cpu_description, resolve_device

    args.device = str(resolve_device(args.device))
    native = bf16_native(args.device)
    auto = auto_precision(args.device)
    cuda = args.device.startswith("cuda")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_checkpoint(tmp / "ckpt", args.arch)
        paths = make_images(tmp, args.num_images)
        bf16_paths = paths if native else paths[: args.emulated_images]
        ours = StyleIDEncoder.from_pretrained(tmp / "ckpt", device=args.device).eval()
        theirs = CLIPModel.from_pretrained(tmp / "ckpt").to(args.device).eval()
        processor = CLIPImageProcessor()

        # warm-up + agreement: same weights → same embeddings up to preprocessing (and bf16 rounding)
        check = paths[: min(8, len(paths))]
        z32 = run_ours(ours, check, args.batch_size, "fp32")
        z16 = run_ours(ours, check, args.batch_size, "bf16")
        zq = run_quickstart(theirs, processor, check, args.batch_size, args.device)
        cos_bf16 = (z16 * z32).sum(-1)
        cos_quick = (z32 * zq).sum(-1)

        runs = {"quick-start (fp32)": lambda: run_quickstart(theirs, processor, paths, args.batch_size, args.device),
                "ours fp32": lambda: run_ours(ours, paths, args.batch_size, "fp32"),
                "ours bf16": lambda: run_ours(ours, bf16_paths, args.batch_size, "bf16")}
        counts = {"quick-start (fp32)": len(paths), "ours fp32": len(paths), "ours bf16": len(bf16_paths)}
        times: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(args.repeats):
            for name, fn in runs.items():
                if cuda:
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                fn()
                if cuda:
                    torch.cuda.synchronize()
                times[name].append(time.perf_counter() - t0)

    rate = {k: counts[k] / statistics.median(v) for k, v in times.items()}
    where = torch.cuda.get_device_name(args.device) if cuda else cpu_description()
    print(f"device={args.device} [{where}] arch={args.arch} images={args.num_images} batch={args.batch_size} "
          f"repeats={args.repeats} torch_threads={torch.get_num_threads()} bf16 native: {native} → auto = {auto}")
    print(f"cosine ours bf16 vs ours fp32 (same images): mean {float(cos_bf16.mean()):.5f}, min {float(cos_bf16.min()):.5f}")
    print(f"cosine ours fp32 vs quick-start (preprocessing differs slightly): mean {float(cos_quick.mean()):.4f}")
    print(f"{'path':<20}{'images':>7}{'median s':>10}{'images/s':>10}{'x quick-start':>15}")
    base = rate["quick-start (fp32)"]
    for name in runs:
        note = "" if native or name != "ours bf16" else "  (bf16 emulated here)"
        print(f"{name:<20}{counts[name]:>7}{counts[name] / rate[name]:>10.2f}{rate[name]:>10.2f}{rate[name] / base:>15.2f}{note}")
    chosen = "ours bf16" if auto == "bf16" else "ours fp32"
    print(f"ratios: ours fp32 / quick-start = {rate['ours fp32'] / base:.2f}x, ours bf16 / quick-start = "
          f"{rate['ours bf16'] / base:.2f}x; --precision auto here runs {chosen}: {rate[chosen] / base:.2f}x "
          f"(goal ≥ 3x with cosine ≥ 0.9995 to fp32)")


if __name__ == "__main__":
    main()
