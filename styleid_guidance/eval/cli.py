"""`styleid eval`: verification metrics of StyleID and baselines on StyleBench-H-style pair lists.

    styleid eval --model ID_OR_DIR --pairs pairs.csv -o DIR [--crop face] [--baseline clip ...]

pairs.csv columns: `source,stylized,label` (paths relative to the CSV, label 1 = same person) plus
optional `split,method,style,strength,human` (`human` is carried along, not scored).

Writes to DIR: metrics.json ({model: {"overall": report, "split": {name: report}, "method": ...,
"style": ..., "strength": ...}}), table.md (the paper's Table 1 layout), roc.png, roc_log.png,
similarity_vs_strength.png, and embedding_cache/ (so adding a baseline later embeds only with it).

Baselines: `clip` (open_clip ViT-L-14/openai, no LoRA), `siglip2` (ViT-L-16-SigLIP2-256/webli),
`arcface` (facexlib IR-SE50); `NAME=MODEL` overrides the weights (`clip=test-tiny` and
`arcface=random` are offline test models).
"""
from __future__ import annotations

import argparse
from typing import Any

from ..cli import args as common
from .models import BASELINES


def register(sub: Any) -> None:
    p = sub.add_parser("eval", help="verification metrics, Table-1-style report and ROC plots on a pairs CSV",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", required=True, metavar="CSV",
                   help="CSV with source,stylized,label[,split,method,style,strength,human]; paths relative to it")
    common.add_output(p, "output folder (metrics.json, table.md, PNG plots, embedding cache)")
    common.add_model(p)
    p.add_argument("--name", default="styleid", help="row name of --model in the outputs; --model none evaluates baselines only (default: %(default)s)")
    p.add_argument("--baseline", action="append", default=[], metavar="NAME[=MODEL]",
                   help=f"also evaluate {', '.join(BASELINES)}; repeatable; =MODEL overrides the weights (e.g. clip=test-tiny)")
    common.add_faces(p)
    common.add_device(p)
    common.add_batch_size(p)
    p.add_argument("--cache-dir", default=None, metavar="DIR", help="embedding cache folder (default: OUTPUT/embedding_cache)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write cached embeddings")
    common.add_progress(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .api import evaluate

    model = None if str(args.model).lower() == "none" else args.model
    device = common.device_from(args)
    result = evaluate(model, args.pairs, args.output, baselines=args.baseline, crop=args.crop, name=args.name,
                      device=device, batch_size=args.batch_size,
                      cache_dir=None if args.no_cache else (args.cache_dir or "default"),
                      detector=args.detector or "retinaface", model_rootpath=args.model_rootpath,
                      progress=not args.no_progress)
    print(result.files["table"].read_text(), end="")
    print("wrote " + ", ".join(str(p) for p in result.files.values()))
    return 0
