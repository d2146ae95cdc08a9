"""`styleid verify A B [C ...]`: cosine similarity of each image to the first, and a same/different verdict."""
from __future__ import annotations

import argparse
import math
from typing import Any

from . import args as common

DEFAULT_THRESHOLD = 0.4  # the paper's middle fixed threshold (Acc@0.4)


def register(sub: Any) -> None:
    p = sub.add_parser("verify", help="cosine similarity and same/different verdict for a photo and its stylisations",
                       description=__doc__)
    p.add_argument("a", metavar="PHOTO", help="first image (e.g. the photo)")
    p.add_argument("b", metavar="IMAGE", help="second image (e.g. a stylisation)")
    p.add_argument("more", nargs="*", metavar="IMAGE", help="further images, each compared with the first")
    common.add_model(p)
    common.add_faces(p)
    common.add_device(p)
    common.add_precision(p, "auto")  # interactive: fast where bf16 is native; --precision fp32 for exact scores
    p.add_argument("--threshold", type=common.finite_float, default=DEFAULT_THRESHOLD,
                   help="cosine similarity at or above which a pair is 'same' (default: %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..images import load_image

    files = [args.a, args.b, *args.more]
    for f in files:  # bad files fail before any model is loaded
        load_image(f)
    encoder = common.load_encoder(args)
    with torch.inference_mode():
        z = encoder.embed(files, crop=args.crop, detector=args.detector or "retinaface", model_rootpath=args.model_rootpath,
                          precision=args.precision)
    sims = (z[1:] @ z[0]).tolist()
    for path, sim in zip(files[1:], sims):
        verdict = "same" if sim >= args.threshold else "different"
        name = f"{args.a} vs {path}" if len(files) > 2 else "similarity"
        print(f"{name}: {sim:.4f}  {verdict} (threshold {args.threshold:g})" if math.isfinite(sim) else f"{name}: undefined")
    return 0
