"""`styleid score --people REF GEN` and `styleid score --layout multiid-bench ROOT`: the several-people modes
of `styleid score` (styleid_guidance.people), reached from cli/score.py's run."""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

from ..errors import StyleIDError
from ..options import BENCHMARK_LAYOUTS, detector_for
from . import parsing, runtime


def _write(args: argparse.Namespace, rows: list[dict[str, Any]], summary: dict[str, Any], log: Any) -> bool:
    """--csv and --json as plain `styleid score` writes them; True when the JSON went alone to stdout."""
    from ..files.atomic import atomic_write

    if args.csv is not None:
        with parsing.for_option("--csv", args.csv), atomic_write(Path(args.csv)) as tmp, \
                open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["model"])
            writer.writeheader()
            writer.writerows(rows)
        log.info(f"wrote {len(rows)} rows to {args.csv}")
    if args.json == "-":
        print(json.dumps(summary, indent=2, allow_nan=False))
        return True
    if args.json is not None:
        with parsing.for_option("--json", args.json), atomic_write(Path(args.json)) as tmp:
            tmp.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        log.info(f"wrote the summary to {args.json}")
    return False


def _refuse(args: argparse.Namespace, mode: str, flags: dict[str, bool]) -> None:
    given = [f for f, on in flags.items() if on]
    if given:
        raise StyleIDError(f"{given[0]} does not apply to {mode}; leave it out")


def run_people(args: argparse.Namespace) -> int:
    from ..files.atomic import check_writable_file
    from ..people.assign import analyse

    log = runtime.command_logger("score")
    if args.layout is not None and args.layout not in BENCHMARK_LAYOUTS:
        raise StyleIDError(f"--layout {args.layout} is a training-data layout (styleid train); styleid score reads "
                           f"--layout {' or '.join(BENCHMARK_LAYOUTS)}")
    layout = args.layout is not None
    mode = f"--layout {args.layout}" if layout else "--people"
    _refuse(args, mode, {"--pairs": args.pairs is not None, "--reference-set": args.reference_set,
                         "--frames": args.frames is not None, "--protocol": args.protocol is not None,
                         "--plot": args.plot is not None, "--crop center": args.crop == "center",
                         "--crop none": args.crop == "none", "--people": layout and args.people,
                         "--match": layout and args.match is not None,
                         # faces are found in every image by definition, and nothing is cached or decoded in threads
                         f"--no-face {args.no_face}": args.no_face != "center", "--num-workers": args.num_workers is not None,
                         "--cache-dir": args.cache_dir is not None, "--no-cache": args.no_cache})
    if layout and args.generated is not None:
        raise StyleIDError(f"--layout {args.layout} reads one folder, ROOT (got a second one, {args.generated}); "
                           f"use `styleid score --layout {args.layout} ROOT`")
    if not layout and not args.people:
        raise StyleIDError("--match chooses how --people assigns faces; add --people (REF: one photo per person)")
    if not layout and args.generated is None:
        raise StyleIDError("--people needs REF (one photo or folder per person) and GEN (the generated images)")
    analyse([], [], [], args.threshold, args.margin)  # each error names its own flag (Arg)
    for flag, path in (("--csv", args.csv), ("--json", args.json)):
        if path is not None and path != "-":
            with parsing.for_option(flag, path):  # before any model loads
                check_writable_file(path)
    common: dict[str, Any] = {"device": runtime.device_from(args), "precision": args.precision,
                              "batch_size": args.batch_size, "detector": detector_for(args.detector),
                              "model_rootpath": args.model_rootpath}
    if layout:
        from ..people.multiid import score_layout

        with parsing.for_option("--model", ", ".join(args.model) if args.model else None):
            result: Any = score_layout(args.reference, args.model, **common)
    else:
        from ..people.run import score_people

        with parsing.for_option("--model", ", ".join(args.model) if args.model else None):
            result = score_people(args.reference, args.generated, args.model, match=args.match or "identity",
                                  threshold=args.threshold, margin=args.margin, **common)
    if _write(args, result.rows(), result.summary(), log):
        return 0
    for name in result.models:  # the command's output: one line per model
        print(result.line(name))
    return 0
