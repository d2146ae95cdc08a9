"""`styleid` command line: verify two faces, embed a folder, evaluate on pair lists."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from .errors import StyleIDError, run_cli
from .faces import DETECTORS
from .preprocess import CROPS

DEFAULT_THRESHOLD = 0.4  # the paper's middle fixed threshold (Acc@0.4)


class _Parser(argparse.ArgumentParser):
    """argparse already exits with 2 and one line on usage errors; keep its format for ours too."""


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="kwanY/styleid", help="Hub id or local folder of a StyleID encoder (default: %(default)s)")
    p.add_argument("--crop", choices=CROPS, default="face", help="face: detect and crop the face (default); center: CLIP centre crop; none: whole image")
    p.add_argument("--detector", choices=DETECTORS, default="retinaface", help="face detector for --crop face (default: %(default)s)")
    p.add_argument("--model-rootpath", default=None, help="folder with facexlib weights (RetinaFace) to use instead of downloading")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")


def _load_encoder(args: argparse.Namespace):
    import torch

    from .encoder import StyleIDEncoder

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        torch.device(device)
    except RuntimeError:
        raise StyleIDError(f"--device {device!r} is not a valid torch device (cpu, cuda, cuda:0 ...)") from None
    return StyleIDEncoder.from_pretrained(args.model, device=device).eval()


def _cmd_verify(args: argparse.Namespace) -> int:
    import torch

    from .images import load_image

    files = [args.a, args.b, *args.more]
    for f in files:  # bad files fail before any model is loaded
        load_image(f)
    encoder = _load_encoder(args)
    with torch.inference_mode():
        z = encoder.embed(files, crop=args.crop, detector=args.detector, model_rootpath=args.model_rootpath)
    sims = (z[1:] @ z[0]).tolist()
    for path, sim in zip(files[1:], sims):
        verdict = "same" if sim >= args.threshold else "different"
        name = f"{args.a} vs {path}" if len(files) > 2 else "similarity"
        print(f"{name}: {sim:.4f}  {verdict} (threshold {args.threshold:g})")
    return 0


def _cmd_embed(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    from .images import atomic_write, list_images

    out = Path(args.out)
    if out.suffix not in (".npy", ".safetensors"):
        raise StyleIDError(f"--out {out}: use a .npy or .safetensors file name")
    files = list_images(args.folder)
    if not files:
        raise StyleIDError(f"{args.folder}: no images (.png, .jpg, .webp ...) found")
    encoder = _load_encoder(args)
    chunks, kept, skipped = [], [], []
    with torch.inference_mode():
        for i in tqdm(range(0, len(files), args.batch_size), desc="embedding", unit="batch"):
            batch = files[i : i + args.batch_size]
            if args.skip_bad:
                good = []
                for f in batch:
                    try:
                        chunks.append(encoder.embed([f], crop=args.crop, detector=args.detector, model_rootpath=args.model_rootpath).cpu())
                        good.append(f)
                    except StyleIDError as err:
                        skipped.append(str(err))
                kept.extend(good)
            else:
                chunks.append(encoder.embed(batch, crop=args.crop, detector=args.detector, model_rootpath=args.model_rootpath).cpu())
                kept.extend(batch)
    if not chunks:
        raise StyleIDError(f"{args.folder}: no image could be embedded ({skipped[0] if skipped else 'empty'})")
    emb = torch.cat(chunks).float()
    names = [str(f.relative_to(args.folder)) for f in kept]
    if out.suffix == ".npy":
        with atomic_write(out) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, emb.numpy())
        with atomic_write(out.with_suffix(".files.txt")) as tmp:
            tmp.write_text("\n".join(names) + "\n")
    else:
        from safetensors.torch import save_file

        with atomic_write(out) as tmp:
            save_file({"embeddings": emb.contiguous()}, str(tmp), metadata={"files": json.dumps(names), "model": str(args.model)})
    print(f"wrote {len(names)} embeddings of dimension {emb.shape[1]} to {out}")
    if skipped:
        print(f"skipped {len(skipped)} unreadable images, e.g. {skipped[0]}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="styleid", description="Style-robust face identity: verify, embed, evaluate.")
    sub = parser.add_subparsers(dest="command", required=True)

    verify = sub.add_parser("verify", help="cosine similarity and same/different verdict for two faces")
    _add_model_args(verify)
    verify.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, help="cosine threshold for 'same' (default: %(default)s)")
    verify.add_argument("a", help="first image (e.g. the photo)")
    verify.add_argument("b", help="second image (e.g. a stylisation)")
    verify.add_argument("more", nargs="*", help="further images, each compared with the first")
    verify.set_defaults(func=_cmd_verify)

    embed = sub.add_parser("embed", help="embed every image of a folder to .npy or .safetensors")
    _add_model_args(embed)
    embed.add_argument("folder", help="folder of images (searched recursively)")
    embed.add_argument("--out", required=True, help="output file: .npy (+ .files.txt) or .safetensors")
    embed.add_argument("--batch-size", type=int, default=32)
    embed.add_argument("--skip-bad", action="store_true", help="skip unreadable images or images without a face instead of stopping")
    embed.set_defaults(func=_cmd_embed)

    from . import evaluation

    evaluation.register(sub)
    return parser


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


def main(argv: Sequence[str] | None = None) -> int:
    sys.exit(run_cli(_main, argv, prog="styleid"))


if __name__ == "__main__":
    main()
