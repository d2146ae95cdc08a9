"""`styleid score REF GEN`: how well generated images keep the identity of their references.

REF and GEN are each an image, a folder (searched recursively, sorted) or an embeddings file written by
`styleid embed` (.safetensors, or .npy + .files.txt). Pairing:

  * REF one image (or a one-row embeddings file): compared with every image of GEN;
  * REF and GEN folders: paired by relative path without the suffix (refs/ann.png ↔ gen/ann.jpg);
  * --pairs CSV: `reference,generated` columns (or eval's `source,stylized`), paths inside REF and GEN;
  * --reference-set: REF holds several photos of one person; GEN is compared with their mean embedding,
    and the same-person spread among the photos is printed as the baseline to read the score against.

--model is repeatable: a StyleID folder / Hub id / test-tiny (a distilled student is a StyleID folder), or
eval's baselines arcface, clip, adaface, siglip2, antelopev2 (NAME=WEIGHTS overrides the weights, e.g.
clip=test-tiny). Prints one line per model:

    StyleID: 0.712 ± 0.081 (n=500, no_face=3, verified=0.94 @0.40)

(mean cosine similarity ± its standard deviation over pairs; verified = fraction at or above --threshold).
--csv writes every pair, --json a summary. With --crop face, an image without a detectable face is embedded
from its centre crop and counted (--no-face center, the default), left out (skip), or stops the run (error).
Embeddings are cached by file content in --cache-dir (default $STYLEID_CACHE/score, ~/.cache/styleid/score).

Videos (.mp4 .webm .mov .mkv .avi .gif, alone or in a folder with images) are one item each, scored on
--frames N frames at numpy.linspace(0, n-1, N) (default 16, as ConsisID; all = every frame) over the n frames
the stream holds. A video's similarity is the mean of its frames; the model's is the mean over videos:

    StyleID: 0.655 ± 0.040 (n=3, no_face=2, verified=0.67 @0.40, videos=3, frames=48)

--csv then has one row per frame (with `frame` and `time` in seconds), --json a "videos" list per model,
--plot DIR one similarity-over-time PNG per video. --protocol consisid adds ConsisID's FaceSim-Arc on the
same frames (antelopev2 faces at det size 320, cosine clipped at 0, no-face frames left out). Under
`accelerate launch -m styleid_guidance score ...` the items are split across the processes.
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

from ..errors import StyleIDError
from ..options import DATA_LAYOUTS, DEFAULT_SWAP_MARGIN as DEFAULT_MARGIN, NO_FACE_POLICIES, detector_for
from . import flags, parsing, runtime
from .values import finite_float

NO_FACE_HELP = ("without a detectable face (--crop face): center = embed the centre crop and count it (default); "
                "skip = leave the pair out; error = stop")


def register(sub: Any) -> None:
    p = sub.add_parser("score", help="identity similarity of generated images to references (folders, embeddings, several models)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("reference", metavar="REF", help="reference image, video, folder, or embeddings file from styleid embed")
    p.add_argument("generated", metavar="GEN", nargs="?",
                   help="generated image, video, folder (images and videos), or embeddings file from styleid embed "
                        "(left out with --bench)")
    p.add_argument("--pairs", default=None, metavar="CSV", help="CSV with reference,generated columns naming files inside REF and GEN")
    p.add_argument("--reference-set", action="store_true",
                   help="REF is several photos of one person: compare with their mean embedding, print their spread as the baseline")
    flags.add_model(p, default=None, repeatable=True)
    flags.add_threshold(p)
    p.add_argument("--csv", default=None, metavar="PATH", help="write one row per model and pair")
    p.add_argument("--json", default=None, metavar="PATH", help="write the summary as JSON; - prints it (alone) on stdout")
    flags.add_faces(p)
    p.add_argument("--no-face", choices=NO_FACE_POLICIES, default="center", help=NO_FACE_HELP)
    flags.add_device(p)
    flags.add_precision(p, "fp32")  # a metric: the same numbers on every machine unless asked otherwise
    flags.add_batch_size(p)
    p.add_argument("--num-workers", type=int, default=None,
                   help="threads that decode and crop images ahead of the model; 0 = none (default: up to 4)")
    p.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="embedding cache folder (default: $STYLEID_CACHE/score or ~/.cache/styleid/score)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write cached embeddings")
    p.add_argument("--frames", default=None, metavar="N|all",
                   help="frames sampled uniformly over each video, linspace(0, n-1, N) as ConsisID (default: 16); all = every frame")
    p.add_argument("--protocol", default=None, metavar="consisid[=PACK]",
                   help="also compute a benchmark's own number on the same frames: consisid = ConsisID's FaceSim-Arc "
                        "(insightface antelopev2, or the pack folder PACK)")
    p.add_argument("--plot", default=None, metavar="DIR", help="save each video's similarity-over-time curve as DIR/<video>.png")
    people = p.add_argument_group("several people in one picture (see docs/SCORE_PEOPLE.md)")
    people.add_argument("--people", action="store_true",
                        help="REF holds one photo (or subfolder of photos) per person, named after them; every face of "
                             "each GEN image is assigned to a person: found, missing, unknown faces, swaps, merges")
    people.add_argument("--match", choices=("identity", "position"), default=None,
                        help="with --people: identity = Hungarian assignment on similarity (default); position = the "
                             "face boxes of each person per image in GEN's people.json")
    people.add_argument("--margin", type=finite_float, default=DEFAULT_MARGIN,
                        help="with --people: a face is a swap when another person's reference beats its own by more "
                             "than this cosine (default: %(default)s)")
    # one --layout for every command (options.DATA_LAYOUTS): score reads the benchmark layouts, train the data ones
    people.add_argument("--layout", choices=DATA_LAYOUTS, default=None,
                        help="REF is a benchmark's root folder in its own layout (no GEN): multiid-bench = WithAnyone's "
                             "MultiID-Bench, Sim(Ref), Sim(GT) and copy-paste per person")
    flags.add_progress(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..files.atomic import atomic_write, check_writable_dir, check_writable_file
    from ..files.video import DEFAULT_FRAMES, parse_frames
    from ..score.consisid import parse_protocol
    from ..score.pairing import pair_sources
    from ..score.run import check_threshold, score
    from ..score.sources import read_source

    if args.people or args.layout is not None or args.match is not None:  # several people: cli/score_people.py
        from .score_people import run_people

        return run_people(args)
    if args.generated is None:
        raise StyleIDError("GEN is missing: give the generated image, video, folder or embeddings file after REF")
    log = runtime.command_logger("score")
    if args.num_workers is not None and args.num_workers < 0:
        raise StyleIDError(f"--num-workers {args.num_workers}: must be 0 (no threads) or more")
    with parsing.for_option("--threshold", args.threshold):
        check_threshold(args.threshold)
    for flag, path in (("--csv", args.csv), ("--json", args.json)):
        if path is not None and path != "-":
            with parsing.for_option(flag, path):  # before any model loads
                check_writable_file(path)
    frames = parse_frames(args.frames if args.frames is not None else DEFAULT_FRAMES)
    if args.protocol is not None:
        parse_protocol(args.protocol)
    # the inputs and their pairing first, so their errors name the file, not --model
    ref, gen = read_source(args.reference, frames), read_source(args.generated, frames)
    if args.frames is not None and not gen.videos:
        raise StyleIDError(f"--frames {args.frames}: {args.generated} holds no video (.mp4 .webm .mov .mkv .avi .gif); "
                           "leave out --frames for images")
    pairing = pair_sources(ref, gen, args.pairs, args.reference_set)
    if args.plot is not None:  # after the inputs, so a refused video leaves no folder behind; before any model loads
        with parsing.for_option("--plot", args.plot):
            check_writable_dir(args.plot)
    with parsing.for_option("--model", ", ".join(args.model) if args.model else None):
        result = score(ref, gen, args.model, pairing=pairing,
                       crop=args.crop, no_face=args.no_face, threshold=args.threshold, device=runtime.device_from(args),
                       precision=args.precision, batch_size=args.batch_size, num_workers=args.num_workers,
                       detector=detector_for(args.detector), model_rootpath=args.model_rootpath,
                       cache_dir=None if args.no_cache else (args.cache_dir or "default"), progress=not args.no_progress,
                       frames=frames, protocol=args.protocol)
    if not result.is_main:  # another process of `accelerate launch`: the main one reports
        return 0
    if args.plot is not None:
        from ..score.plot import save_plots

        with parsing.for_option("--plot", args.plot):
            log.info(f"wrote {len(save_plots(result, args.plot))} plots to {args.plot}")
    if args.csv is not None:
        rows = result.rows()
        with parsing.for_option("--csv", args.csv), atomic_write(Path(args.csv)) as tmp:
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["model"])
                writer.writeheader()
                writer.writerows(rows)
        log.info(f"wrote {len(rows)} rows to {args.csv}")
    if args.json == "-":  # the summary is the output: JSON alone on stdout, for pipes
        print(json.dumps(result.summary(), indent=2, allow_nan=False))
        return 0
    if args.json is not None:
        with parsing.for_option("--json", args.json), atomic_write(Path(args.json)) as tmp:
            tmp.write_text(json.dumps(result.summary(), indent=2, allow_nan=False) + "\n", encoding="utf-8")
        log.info(f"wrote the summary to {args.json}")
    for m in result.models:  # the command's output
        print(m.line())
    return 0
