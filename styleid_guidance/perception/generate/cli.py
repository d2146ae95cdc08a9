"""`styleid generate`: StyleBench-S data from your own face photos, with the paper's three stylizers.

    styleid generate faces/ -o OUT                          all three methods × the paper's ten styles × levels 1..7
    styleid generate faces/ -o OUT --methods ip_adapter --styles pixar,orc --levels 2,5
    styleid generate faces/ -o OUT --styles pixar "viking=Portrait of a Viking warrior"
    styleid generate faces/ -o OUT --calibration study/psychometric.json   the levels people still recognise
    styleid generate faces/ -o OUT --pairs OUT/pairs.csv    also a balanced same/different pair list
    styleid generate faces/ -o OUT --tiny --steps 2         offline, tiny random models (a smoke test)

Layout (StyleBench-S; StyleID, Yun et al., SIGGRAPH 2026): `OUT/p3/{id}.png` (the source, re-encoded as PNG;
{id} is the photo's file name), `OUT/{method}/{style}/{id}_{idx}.png` with **{idx} = the strength level 1..7**, and
`OUT/manifest.jsonl`, one JSON record per image — path, id, method, style, prompt, level, seed, every
pipeline argument (`params`), the user's `overrides`, model ids, dtype, device, size and sha256. The
manifest is the authority (`styleid train` reads levels from it); `stylebench.json` says idx = level for
older readers. Each image's seed is sha256(seed, id, method, style, level) (53 bits), so any subset
re-generates the same bytes, on any number of processes.

Resuming and crashes: images are written atomically, then recorded. A re-run skips every image whose
record asks for the same thing and whose file is there; kill it at any moment (even SIGKILL) and the next
run loses only the images that were in flight. Records that ask for other settings (another seed, steps,
prompt, source photo) stop the run with an error instead of mixing two datasets in one folder. Photos that
cannot be read or have no detectable face are reported, one line each, skipped, and counted at the end.

Many processes (accelerate): the sorted work list is split with `PartialState().split_between_processes`;
each image is made by exactly one process, the same bytes as a one-process run. Each process appends to its
own manifest part (`OUT/.manifest-parts/`), merged by the main process at the start and end of a run, so
lines never interleave — this also holds across nodes on a shared file system:

    accelerate launch --multi_gpu --num_processes 8 -m styleid_guidance generate faces/ -o OUT
    # a cluster: one launch per node, OUT on a file system every node sees
    accelerate launch --multi_gpu --num_machines 4 --machine_rank $NODE_RANK --num_processes 32 \\
        --main_process_ip $MASTER_ADDR --main_process_port 29500 -m styleid_guidance generate faces/ -o OUT
    # CPU-only test of the split (2 processes, gloo)
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 --num_machines 1 \\
        --mixed_precision no --dynamo_backend no -m styleid_guidance generate faces/ -o OUT --tiny

Throughput, --tiny, this project's shared 2-core CPU (other jobs running, load average 5-6), 4 identities ×
IP-Adapter × 2 styles × 4 levels = 32 images at 64 px, 2 steps, OMP_NUM_THREADS=1: one process 2.1 images/s
after loading (50 s end to end); two processes 1.7 + 1.6 = 3.3 images/s together (65 s end to end: at this
size each process spends ~20 s importing and building models). Byte-identical outputs and manifest either
way. Real models need a GPU; the full StyleBench-S grid (4,073 ids × 3 methods × 10 styles × 7 levels ≈ 855k
images before selection) is a cluster job, hence the split. --precision applies to real models (the tiny ones
stay fp32); under accelerate each process uses the device accelerate gives it and --device is ignored.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ...cli import flags, parsing, runtime, values
from ...errors import Arg, StyleIDError
from ...pipelines import STYLIZERS
from ..layout import all_methods, paper_methods


def register(sub: Any) -> None:
    p = sub.add_parser("generate", help="StyleBench-S data from face photos with the paper's three stylizers (resumable, accelerate)",
                       description=__doc__.split("\n\n")[0], epilog="\n\n".join(__doc__.split("\n\n")[1:3]),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sources", nargs="+", metavar="SOURCES", help="face photos: image files and/or folders of them (ids = file names)")
    flags.add_output(p, "output folder (StyleBench-S layout + manifest.jsonl)")
    extra = [f"{m} = {STYLIZERS[m].description or STYLIZERS[m].label}" for m in all_methods() if m not in paper_methods()]
    p.add_argument("--methods", default=None, metavar="M,M,...",
                   help=f"stylizers, comma-separated: {', '.join(all_methods())} (default: the paper's, "
                        f"{', '.join(paper_methods())}{'; ' if extra else ''}{'; '.join(extra)})")
    p.add_argument("--styles", nargs="+", default=None, metavar="STYLE",
                   help="the paper's style names (pixar,orc,...) and/or custom NAME=PROMPT items (default: the paper's ten)")
    which = p.add_mutually_exclusive_group()
    flags.add_levels(which)
    which.add_argument("--calibration", default=None, metavar="JSON",
                       help="psychometric.json from styleid psychometric: each (method, style) gets its levels_kept")
    flags.add_seed(p)
    steps = ", ".join(f"{m} {STYLIZERS[m].preset(4).get('num_inference_steps', '?')}" for m in all_methods())
    p.add_argument("--steps", type=values.positive_int, default=None,
                   help=f"denoising steps for every method (default: each method's preset, {steps}; tiny IP-Adapter 10)")
    p.add_argument("--image-size", type=values.positive_int, default=None,
                   help="output side in px (default: each method's own, 512 or 1024 px, 32-64 px for the tiny models; "
                        "a method whose output follows the photo keeps its aspect ratio at that area)")
    p.add_argument("--pairs", default=None, metavar="CSV",
                   help="also write a balanced same/different pairs CSV here for a human study or styleid eval")
    flags.add_tiny(p)
    flags.add_device(p)
    flags.add_precision(p)
    flags.add_faces(p, crop=False)
    flags.add_progress(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ...files.atomic import check_writable_dir, check_writable_file
    from .engine import GenerateConfig, generate
    from ..layout import find_sources, parse_methods, parse_styles, plan_cells, read_calibration

    with parsing.for_option("--methods", args.methods):
        methods = parse_methods(args.methods or ",".join(paper_methods()))
    with parsing.for_option("--styles"):
        styles = parse_styles(args.styles)
    calibration = None
    if args.calibration is not None:
        with parsing.for_option("--calibration"):
            calibration = read_calibration(args.calibration)
    with parsing.for_option("--calibration" if calibration else "--levels"):
        cells = plan_cells(methods, styles, args.levels, calibration,
                           methods_given=args.methods is not None,
                           styles_given=args.styles is not None)
    if not cells:  # only a calibration can plan nothing: without one, every method × style × level is a cell
        raise StyleIDError("nothing to generate: {calibration} keeps no level for the chosen methods and styles",
                           param="calibration", calibration=Arg("calibration", args.calibration))
    with parsing.for_option("SOURCES"):
        sources = find_sources(args.sources)
    # fail now, not after loading several GB of models
    with parsing.for_option("--output", args.output):
        check_writable_dir(args.output)
    pairs = None
    if args.pairs is not None:
        with parsing.for_option("--pairs", args.pairs):
            pairs = check_writable_file(args.pairs)
    overrides: dict[str, Any] = {}
    if args.steps is not None:
        overrides["num_inference_steps"] = args.steps
    if args.image_size is not None:
        overrides["height"] = overrides["width"] = args.image_size
    device = None
    if args.device is not None:
        device = str(runtime.device_from(args))
    config = GenerateConfig(sources=sources, output=Path(args.output), cells=cells, styles=styles, seed=args.seed,
                            tiny=args.tiny, device=device, precision=args.precision, detector=args.detector,
                            model_rootpath=args.model_rootpath, overrides=overrides, pairs=pairs,
                            progress=not args.no_progress)
    log = runtime.command_logger("generate")
    result = generate(config)
    rate = result.made / result.image_seconds if result.image_seconds > 0 else 0.0
    if result.num_processes > 1:  # under accelerate launch each process reports its own share (one line each)
        log.info(f"process {result.is_main and 'main' or 'worker'}: made {result.made} image(s) in {result.seconds:.1f} s, "
                 f"{rate:.2f} images/s after loading")
    if result.is_main:
        log.info(f"{args.output}: {result.total} of {len(cells) * (len(sources) - len(result.skipped_sources))} planned "
                 f"image(s) on disk, {result.new_records} new record(s) this run; manifest "
                 f"{Path(args.output) / 'manifest.jsonl'}"
                 + (f" ({result.made} made; {result.seconds:.1f} s in all, {rate:.2f} images/s after loading the models)"
                    if result.num_processes == 1 else ""))
        if result.skipped_sources:
            log.warning(f"skipped {len(result.skipped_sources)} source photo(s) that could not be read or show no face "
                        f"(e.g. {', '.join(result.skipped_sources[:5])})")
        if result.no_face_images:
            log.warning(f"skipped {result.no_face_images} (method, id) group(s) whose stylizer found no face")
        if pairs is not None:
            log.info(f"wrote {pairs} ({result.pairs_rows} pairs"
                     + (f"; {result.lonely_cells} cell(s) with one identity give none" if result.lonely_cells else "") + ")")
    return 0

