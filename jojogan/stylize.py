"""Apply a JoJoGAN style checkpoint to new faces: `python -m jojogan.stylize FACE [...] --style_ckpt style.pt`.

Each face is FFHQ-aligned, inverted with e4e and rendered by the fine-tuned generator; the result
is written as `OUTPUT_DIR/<face stem>_<style stem>.png` (with `--side_by_side`, aligned input | result).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from PIL import Image
from tqdm.auto import tqdm

from styleid_guidance.errors import run_cli
from styleid_guidance.images import atomic_write


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m jojogan.stylize", description="Stylize faces with a JoJoGAN style checkpoint.")
    p.add_argument("faces", nargs="+", help="face photos")
    p.add_argument("--style_ckpt", required=True, help="style checkpoint written by styleid-jojogan (or an upstream JoJoGAN .pt)")
    p.add_argument("--e4e_ckpt", default="models/e4e_ffhq_encode.pt", help="e4e encoder checkpoint")
    p.add_argument("--output_dir", "-o", default="stylized", help="folder for the results")
    p.add_argument("--side_by_side", action="store_true", help="save aligned input and result next to each other")
    p.add_argument("--no_align", action="store_true", help="faces are already FFHQ-aligned: centre-crop instead of detecting")
    p.add_argument("--detector", choices=("retinaface", "mtcnn"), default=None, help="face detector (default retinaface; mtcnn with --tiny)")
    p.add_argument("--model_rootpath", default=None, help="folder with facexlib detector weights")
    p.add_argument("--device", default=None)
    p.add_argument("--tiny", action="store_true", help="random tiny e4e matching a --tiny style checkpoint (smoke tests)")
    p.add_argument("--seed", type=int, default=0, help="seed of the --tiny models (use the training --seed)")
    return p


def _main(argv: Sequence[str] | None) -> int:
    from . import checkpoints
    from .api import JoJoGAN

    args = build_parser().parse_args(argv)
    generator = checkpoints.load_style(args.style_ckpt)
    if args.tiny:
        jj = JoJoGAN.tiny(size=generator.size, device=args.device or "cpu", seed=args.seed)
        generator = jj.load_style(args.style_ckpt)  # checks it was made with --tiny
    else:  # stylizing needs no discriminator
        jj = JoJoGAN(generator, None, checkpoints.load_e4e(args.e4e_ckpt, stylegan_size=generator.size), device=args.device)
    jj.detector = args.detector or jj.detector
    jj.model_rootpath = args.model_rootpath
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    style = Path(args.style_ckpt).stem
    for face in tqdm(args.faces, desc="stylize", disable=len(args.faces) < 2):
        aligned = jj.align(face, align=not args.no_align)
        result = jj.stylize(aligned, generator, align=False)
        if args.side_by_side:
            pair = Image.new("RGB", (2 * jj.size, jj.size))
            pair.paste(aligned, (0, 0))
            pair.paste(result, (jj.size, 0))
            result = pair
        path = out_dir / f"{Path(face).stem}_{style}.png"
        with atomic_write(path) as tmp:
            result.save(tmp, format="PNG")
        print(path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv, prog="python -m jojogan.stylize")


if __name__ == "__main__":
    raise SystemExit(main())
