"""`styleid embed FOLDER -o embeddings.safetensors`: embed every image of a folder (recursively).

`.safetensors` holds the embeddings and, in its metadata, the file names and model: one file, so
names and rows cannot get out of step. `.npy` writes the array plus `NAME.files.txt` (one relative
path per row) whose first line records the array's SHA-256, so a reader can tell the two belong
together (`styleid_guidance.files.embeddings.read_embeddings` checks it).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import StyleIDError
from ..options import detector_for
from . import flags, parsing, runtime

SUFFIXES = (".npy", ".safetensors")


def register(sub: Any) -> None:
    p = sub.add_parser("embed", help="embed every image of a folder to .safetensors or .npy", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", metavar="FOLDER", help="folder of images (searched recursively)")
    flags.add_output(p, "output file: .safetensors (embeddings + file names) or .npy (+ .files.txt)")
    flags.add_model(p)
    flags.add_faces(p)
    flags.add_device(p)
    flags.add_precision(p, "auto")  # bulk work: bf16 where native (cosine ≥ 0.9995 to fp32); fp32 for exact files
    flags.add_batch_size(p)
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images or images without a face instead of stopping")
    flags.add_progress(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    from ..files.embeddings import write_embeddings
    from ..files.atomic import check_writable_file
    from ..files.images import list_images

    out = Path(args.output)
    if out.suffix not in SUFFIXES:
        raise StyleIDError(f"--output {out}: use a .npy or .safetensors file name")
    with parsing.for_option("--output"):  # before any model loads or image is embedded
        check_writable_file(out)
    files = list_images(args.folder)
    if not files:
        raise StyleIDError(f"{args.folder}: no images (.png, .jpg, .webp ...) found")
    encoder = runtime.load_encoder(args)
    detector = detector_for(args.detector)
    chunks, kept, skipped = [], [], []
    with torch.inference_mode():
        for i in tqdm(range(0, len(files), args.batch_size), desc="embedding", unit="batch", disable=args.no_progress):
            batch = files[i : i + args.batch_size]
            if args.skip_bad:
                for f in batch:
                    try:
                        chunks.append(encoder.embed([f], crop=args.crop, detector=detector, model_rootpath=args.model_rootpath,
                                                    precision=args.precision).cpu())
                        kept.append(f)
                    except StyleIDError as err:
                        skipped.append(str(err))
            else:
                chunks.append(encoder.embed(batch, crop=args.crop, detector=detector, model_rootpath=args.model_rootpath,
                                            precision=args.precision).cpu())
                kept.extend(batch)
    if not chunks:
        raise StyleIDError(f"{args.folder}: no image could be embedded ({skipped[0] if skipped else 'empty'})")
    emb = torch.cat(chunks).float()
    names = [str(f.relative_to(args.folder)) for f in kept]
    with parsing.for_option("--output"):
        write_embeddings(out, emb, names, model=str(args.model))
    log = runtime.command_logger("embed")
    log.info(f"wrote {len(names)} embeddings of dimension {emb.shape[1]} to {out}")
    if skipped:
        log.warning(f"skipped {len(skipped)} unreadable images, e.g. {skipped[0]}")
    return 0
