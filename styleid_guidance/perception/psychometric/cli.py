"""`styleid psychometric TRIALS.csv --output DIR [--target 0.9]`: fit a psychometric function per
(method, style) to 2AFC answers and pick the strength levels people still recognise.

    styleid psychometric results/export/trials.csv --output calib
    styleid generate SOURCES -o data --calibration calib/psychometric.json

TRIALS.csv: `participant,method,style,level,correct[,rt_ms]`, one row per answer, level 1..7,
correct 0/1 (what `styleid study DATA --output RESULTS --export` writes). Writes DIR/psychometric.json
(threshold, its credible interval and the levels kept per cell), one PNG per cell and psychometric.png.
Needs psignifit (GPL-3.0-or-later, an optional extra): pip install "styleid-guidance[psychometric]".
"""
from __future__ import annotations

import argparse
from typing import Any

from ...cli import flags, parsing, runtime, values


def register(sub: Any) -> None:
    p = sub.add_parser("psychometric", help="fit psychometric curves to 2AFC trials and select the levels to keep",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("trials", metavar="TRIALS.csv", help="participant,method,style,level,correct[,rt_ms] rows")
    flags.add_output(p, "results folder: psychometric.json and the plots (replaced as a whole)")
    p.add_argument("--target", type=values.finite_float, default=0.9,
                   help="recognition rate that defines the threshold; levels at or above it are kept (default: %(default)s)")
    p.add_argument("--max-lapse", type=values.finite_float, default=0.05,
                   help="upper bound of the free lapse rate (default: %(default)s)")
    p.add_argument("--overdispersion", action="store_true",
                   help="fit a beta-binomial overdispersion (participants differ); slower, wider intervals")
    p.add_argument("--ci", type=values.finite_float, default=0.95, help="credible mass of threshold_ci (default: %(default)s)")
    flags.add_progress(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .fit_trials import check_output_dir, fit_trials, summary_lines
    from .fit import FitOptions

    options = FitOptions(target=args.target, max_lapse=args.max_lapse, overdispersion=args.overdispersion, ci=args.ci)
    options.check()  # before the output folder and the trials are touched
    with parsing.for_option("--output", args.output):  # before reading or fitting anything
        check_output_dir(args.output)
    result, cells = fit_trials(args.trials, args.output, options, progress=not args.no_progress)
    for line in summary_lines(cells):  # the thresholds: the command's output
        print(line)
    runtime.command_logger("psychometric").info(f"wrote {result} and {len(cells) + 1} plots")
    return 0
