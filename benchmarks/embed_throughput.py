"""Embedding throughput: `StyleIDEncoder.embed` vs the authors' quick-start path, same weights.

The quick-start path is transformers `CLIPModel.get_image_features` on `CLIPImageProcessor`
output (the image half of `CLIPProcessor`; the tokenizer is irrelevant to images). Both read the
same folder of JPEGs from disk, so decoding is included. Weights are random but the architecture is
the real one (ViT-L/14 at 224 px by default), so the timing is representative. Runs are
interleaved (A, B, A, B, ...) and the median is reported, so background load hits both alike.

    python benchmarks/embed_throughput.py                       # CPU: ViT-L/14, 32 images
    python benchmarks/embed_throughput.py --device cuda --half  # GPU: ours in fp16 + GPU preprocessing
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

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
        vision_config=dict(hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers, num_attention_heads=heads, patch_size=patch, image_size=size, hidden_act="quick_gelu"),
        projection_dim=proj,
    )
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


def run_ours(encoder, paths, batch_size):
    with torch.inference_mode():
        return encoder.embed([str(p) for p in paths], crop="center", batch_size=batch_size)


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
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--half", action="store_true", help="run our encoder in fp16 (GPU)")
    args = parser.parse_args()

    from transformers import CLIPImageProcessor, CLIPModel

    from styleid_guidance import StyleIDEncoder

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_checkpoint(tmp / "ckpt", args.arch)
        paths = make_images(tmp, args.num_images)
        ours = StyleIDEncoder.from_pretrained(tmp / "ckpt", device=args.device).eval()
        if args.half:
            ours = ours.half()
        theirs = CLIPModel.from_pretrained(tmp / "ckpt").to(args.device).eval()
        processor = CLIPImageProcessor()

        # warm-up + agreement check (same weights → same embeddings up to preprocessing differences)
        a = run_ours(ours, paths[:4], args.batch_size)
        b = run_quickstart(theirs, processor, paths[:4], args.batch_size, args.device)
        agreement = float((a.float() * b.float()).sum(-1).mean())

        times = {"ours": [], "quick-start": []}
        for _ in range(args.repeats):
            for name in times:
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                if name == "ours":
                    run_ours(ours, paths, args.batch_size)
                else:
                    run_quickstart(theirs, processor, paths, args.batch_size, args.device)
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                times[name].append(time.perf_counter() - t0)

    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"device={args.device} arch={args.arch} images={args.num_images} batch={args.batch_size} half={args.half} torch_threads={torch.get_num_threads()}")
    print(f"mean cosine(ours, quick-start) on the same images: {agreement:.4f}")
    print(f"{'path':<14}{'median s':>10}{'images/s':>10}")
    for name, t in med.items():
        print(f"{name:<14}{t:>10.2f}{args.num_images / t:>10.1f}")
    print(f"speed-up ours / quick-start: {med['quick-start'] / med['ours']:.2f}x")


if __name__ == "__main__":
    main()
