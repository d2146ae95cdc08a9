"""`styleid eval`: verification metrics of StyleID and baselines on StyleBench-H-style pair lists.

    styleid eval --model ID_OR_DIR --pairs pairs.csv -o DIR [--crop face] [--baseline clip ...]
    styleid eval --model ID_OR_DIR --pairs pairs.csv -o DIR --table1 [--baseline adaface=PATH ...]

pairs.csv columns: `source,stylized,label` (paths relative to the CSV, label 1 = same person) plus
optional `split,method,style,strength,human` (`human`: the fraction of people who judged the pair
"same", or a 0/1 verdict; empty = not judged).

Writes to DIR, as one set (a re-run replaces all of it; the embedding cache is kept):
metrics.json ({model: {"overall": report, "human": alignment, "split": {name: report + "human"},
"method": ..., "style": ..., "strength": ...}}), table.md (Table 1's layout, plus a human-alignment
table), scores.csv (every pair's columns + one similarity column per model), roc.png, roc_log.png,
similarity_vs_strength.png, human_scatter.png, human_vs_strength.png (the last three only when the
columns they need are there), and embedding_cache/ (so adding a baseline later embeds only with it).

Baselines: `clip` (open_clip ViT-L-14/openai, no LoRA), `siglip2` (ViT-L-16-SigLIP2-256/webli),
`arcface` (facexlib IR-SE50), `adaface` (AdaFace IR-101 .ckpt, from ~/.cache/styleid/adaface or
adaface=PATH), `antelopev2` (insightface's glintr100 with its own detector and norm_crop, as InstantID;
pack from ~/.insightface/models/antelopev2, its Hugging Face copy, or antelopev2=FOLDER); `NAME=MODEL`
overrides the weights (`clip=test-tiny` and `arcface=random` are offline test models).

--table1 evaluates --model and every baseline with the paper's crops (whole portrait with CLIP's
resize + centre crop for StyleID/CLIP/SigLIP2, aligned 112-px faces for ArcFace/AdaFace/AntelopeV2) and lists
baselines whose weights are missing as skipped.
"""
from __future__ import annotations

import argparse
from typing import Any

from ..cli import flags, parsing, runtime
from ..errors import StyleIDError
from ..options import DEFAULT_CROP, detector_for
from .models import BASELINES


def register(sub: Any) -> None:
    p = sub.add_parser("eval", help="verification metrics, Table-1-style report, human alignment and plots on a pairs CSV",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", required=True, metavar="CSV",
                   help="CSV with source,stylized,label[,split,method,style,strength,human]; paths relative to it")
    flags.add_output(p, "output folder (metrics.json, table.md, scores.csv, PNG plots, embedding cache); replaced as a set")
    flags.add_model(p)
    p.add_argument("--name", default="styleid", help="row name of --model in the outputs; --model none evaluates baselines only (default: %(default)s)")
    p.add_argument("--baseline", action="append", default=[], metavar="NAME[=MODEL]",
                   help=f"also evaluate {', '.join(BASELINES)}; repeatable; =MODEL overrides the weights (e.g. clip=test-tiny)")
    p.add_argument("--table1", action="store_true",
                   help="the paper's Table 1: --model and every baseline, each with the paper's crop; missing weights are skipped")
    flags.add_faces(p)
    flags.add_device(p)
    flags.add_precision(p, "fp32")  # metrics: the same numbers on every machine unless asked otherwise
    flags.add_batch_size(p)
    p.add_argument("--cache-dir", default=None, metavar="DIR", help="embedding cache folder (default: OUTPUT/embedding_cache)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write cached embeddings")
    p.add_argument("--save-calibration", action="store_true",
                   help="write the human-fitted logistic calibration into the --model folder (calibration.json), so "
                        "`styleid verify` reports a confidence; needs a `human` column")
    flags.add_progress(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .api import check_output, evaluate
    from .pairs import read_pairs

    if args.table1 and args.crop != DEFAULT_CROP:
        raise StyleIDError("--table1 sets each model's crop itself (centre crop for CLIP-family models, aligned faces for "
                           "ArcFace/AdaFace/AntelopeV2); leave out --crop")
    with parsing.for_option("--pairs", args.pairs):
        pair_list = read_pairs(args.pairs)  # a bad CSV is named as --pairs, before any model loads
    if args.save_calibration:
        from .calibration import check_calibration_target

        check_calibration_target(args.model, pair_list, args.pairs)
    cache_dir = None if args.no_cache else (args.cache_dir or "default")
    with parsing.for_option("--output", args.output):
        check_output(args.output, cache_dir)  # before the long work
    model = None if str(args.model).lower() == "none" else args.model
    device = runtime.device_from(args)
    result = evaluate(model, args.pairs, args.output, baselines=args.baseline, crop=args.crop, name=args.name,
                      device=device, batch_size=args.batch_size, cache_dir=cache_dir,
                      detector=detector_for(args.detector), model_rootpath=args.model_rootpath,
                      progress=not args.no_progress, table1=args.table1, precision=args.precision)
    if args.save_calibration:
        from .calibration import write_calibration

        fit = result.metrics.get(args.name, {}).get("human", {}).get("calibration")
        if fit is None:
            raise StyleIDError(f"--save-calibration: the raters of {args.pairs} never (or always) said 'same'; no calibration "
                               f"can be fitted (the report was written)")
        runtime.command_logger("eval").info(f"wrote {write_calibration(args.model, fit, args.pairs, args.name)}")
    print(result.files["table"].read_text(), end="")  # the table is the command's output
    runtime.command_logger("eval").info("wrote " + ", ".join(str(p) for p in result.files.values()))
    return 0
