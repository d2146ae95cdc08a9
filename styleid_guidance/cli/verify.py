"""`styleid verify A B [C ...]`: cosine similarity of each image to the first, and a same/different verdict."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from ..options import detector_for
from . import flags, parsing, runtime


def register(sub: Any) -> None:
    p = sub.add_parser("verify", help="cosine similarity and same/different verdict for a photo and its stylisations",
                       description=__doc__)
    p.add_argument("a", metavar="PHOTO", help="first image (e.g. the photo)")
    p.add_argument("b", metavar="IMAGE", help="second image (e.g. a stylisation)")
    p.add_argument("more", nargs="*", metavar="IMAGE", help="further images, each compared with the first")
    flags.add_model(p)
    flags.add_faces(p)
    flags.add_device(p)
    flags.add_precision(p, "auto")  # interactive: fast where bf16 is native; --precision fp32 for exact scores
    flags.add_threshold(p)
    p.add_argument("--json", default=None, metavar="PATH",
                   help="write deepface-style results (verified, similarity, threshold, model, detector_backend, facial_areas, "
                        "time, confidence) as JSON; - for stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..files.atomic import atomic_write, check_writable_file
    from ..files.images import load_image
    from ..score.verification import verify

    files = [args.a, args.b, *args.more]
    for f in files:  # bad files fail before any model is loaded
        load_image(f)
    if args.json is not None and args.json != "-":
        with parsing.for_option("--json", args.json):  # before the model loads
            check_writable_file(args.json)
    encoder = runtime.load_encoder(args)
    with parsing.for_option("--model", args.model):
        results = verify(args.a, files[1:], encoder, threshold=args.threshold, crop=args.crop, detector=detector_for(args.detector),
                         model_rootpath=args.model_rootpath, precision=args.precision, model_name=str(args.model),
                         facial_areas=args.json is not None)
    if args.json is not None:
        data = [r.to_dict() for r in results]
        text = json.dumps(data[0] if len(data) == 1 else data, indent=2, allow_nan=False) + "\n"
        if args.json == "-":
            print(text, end="")
            return 0
        with parsing.for_option("--json", args.json), atomic_write(Path(args.json)) as tmp:
            tmp.write_text(text, encoding="utf-8")
    for path, r in zip(files[1:], results):
        sim = r.similarity
        verdict = "same" if r.verified else "different"
        name = f"{args.a} vs {path}" if len(files) > 2 else "similarity"
        conf = f", confidence {r.confidence:.0f}%" if r.confidence is not None else ""
        print(f"{name}: {sim:.4f}  {verdict} (threshold {args.threshold:g}{conf})" if math.isfinite(sim) else f"{name}: undefined")
    return 0
