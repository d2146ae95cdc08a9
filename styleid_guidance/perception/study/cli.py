"""`styleid study DATA --output RESULTS`: the human study (2AFC and same/different) in the browser.

    styleid study data --output results                  # both tasks, on http://127.0.0.1:7860
    styleid study data --output results --task 2afc --trials 70 --repeats 7
    styleid study data --output results --host 0.0.0.0  # participants on your network (or --share)
    styleid study data --output results --export        # clean the answers → results/export/
    styleid psychometric results/export/trials.csv --output calib

DATA is what `styleid generate` writes (p3/, {method}/{style}/, manifest.jsonl, optional pairs.csv).
Every answer is appended (fsync'ed) to RESULTS/responses.csv; restart with the same command to resume,
and participants continue where they stopped by entering their id again. Serves on 127.0.0.1 only
unless told otherwise.
"""
from __future__ import annotations

import argparse
import logging
from typing import Any

from ...cli import flags, parsing, runtime, values
from ...errors import StyleIDError


def register(sub: Any) -> None:
    p = sub.add_parser("study", help="the human study app (2AFC, same/different) and its cleaned export",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", metavar="DATA", help="folder written by `styleid generate` (manifest.jsonl, p3/, ...)")
    flags.add_output(p, "results folder: study.json, responses.csv (one line per answer), export/")
    p.add_argument("--task", choices=("2afc", "verify", "both"), default="both", help="which task(s) (default: %(default)s)")
    p.add_argument("--trials", type=values.positive_int, default=60, help="trials per task and participant (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=6,
                   help="catch trials per task: earlier trials shown again to measure consistency (default: %(default)s)")
    flags.add_seed(p)
    g = p.add_argument_group("serving")
    g.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    g.add_argument("--port", type=int, default=None, help="port (default: the first free one from 7860)")
    g.add_argument("--share", action="store_true", help="also publish a temporary public gradio.live link")
    e = p.add_argument_group("export (with --export: no server; clean the answers and write RESULTS/export/)")
    e.add_argument("--export", action="store_true", help="write trials.csv, pairs_human.csv and cleaning.json")
    e.add_argument("--min-rt-ms", type=values.finite_float, default=300.0, help="drop faster answers (default: %(default)s)")
    e.add_argument("--max-rt-ms", type=values.finite_float, default=30000.0, help="drop slower answers (default: %(default)s)")
    e.add_argument("--max-fast-fraction", type=values.finite_float, default=0.2,
                   help="drop a participant's task when more of its answers are too fast (default: %(default)s)")
    e.add_argument("--min-consistency", type=values.finite_float, default=0.7,
                   help="drop a participant's task when repeated trials agree less often (default: %(default)s)")
    p.set_defaults(func=run)


def _logger() -> logging.Logger:
    return runtime.command_logger("study")


def run_export(args: argparse.Namespace) -> int:
    from .export import CleaningRules, export

    rules = CleaningRules(args.min_rt_ms, args.max_rt_ms, args.max_fast_fraction, args.min_consistency)
    rules.check()  # its errors name the fields, worded as flags here
    report = export(args.data, args.output, rules)
    people = report["participants"]
    dropped = sum(not info["kept"] for infos in people.values() for info in infos)
    print(f"{len(people)} participants, {dropped} participant-task(s) dropped; answers: "  # the command's result
          + ", ".join(f"{k} {v}" for k, v in sorted(report["answers"].items())))
    log = _logger()
    for key, name in report["files"].items():
        log.info(f"wrote {report['folder']}/{name}")
    log.info(f"wrote {report['folder']}/cleaning.json")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.export:
        return run_export(args)
    from .app import build_app, launch
    from .data import load_dataset
    from .session import Study, StudySettings, tasks_from
    from .store import open_store

    if args.port is not None and not 0 < args.port < 65536:
        raise StyleIDError(f"--port must be from 1 to 65535, got {args.port}")
    settings = StudySettings(tuple(tasks_from(args.task)), args.trials, args.repeats, args.seed)
    settings.check()
    log = _logger()
    data = load_dataset(args.data)
    with parsing.for_option("--output", args.output):
        store = open_store(args.output, settings.as_record(data))
    study = Study(data, store, settings)
    n = sum(len(v) for v in store.answered.values())
    log.info("%d images in %d cells; %d answers from %d participants so far in %s", len(data.stylized), len(data.cells), n,
             len(store.answered), store.responses)
    from ...demo.cli import is_loopback

    if not is_loopback(args.host) or args.share:
        log.warning("serving beyond this machine (%s%s): anyone with the address can take part",
                    args.host, ", public share link" if args.share else "")
    try:
        launch(build_app(study), args.host, args.port, args.share)
    finally:
        store.close()
    return 0
