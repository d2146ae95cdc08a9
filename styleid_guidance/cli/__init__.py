"""`styleid`: one command for everything the toolkit does.

    styleid verify PHOTO STYLIZED [...]        similarity and same/different verdicts
    styleid embed FOLDER -o emb.safetensors    embed every image of a folder
    styleid score REF GEN [--model M ...]      identity score of generated images vs references (folders, embeddings)
    styleid push MODEL_DIR --repo-id U/NAME    publish an encoder on the Hub (safetensors, card with eval results)
    styleid eval --pairs pairs.csv -o DIR      verification metrics, Table-1 layout, plots
    styleid train --config configs/smoke.yaml  train a StyleID encoder (accelerate: CPU to many GPUs)
    styleid distill --data DIR -o DIR          distil a StyleID teacher into a small, fast student
    styleid smoke-data DIR                     synthetic StyleBench-layout data for a CPU smoke run
    styleid generate PHOTOS... -o DIR          StyleBench-S data: photos × stylizers × strength levels
    styleid jojogan train STYLE.png -o s.pt    JoJoGAN one-shot fine-tuning with --id_loss styleid|arcface|none
    styleid jojogan stylize FACE --style-ckpt s.pt
    styleid demo                               the Gradio demo on 127.0.0.1
    styleid study DATA -o DIR                  the human studies (2AFC + same/different) as a local web app
    styleid psychometric TRIALS.csv -o DIR     psychometric curves and thresholds from the answers
    styleid comfyui install COMFYUI_DIR        link the ComfyUI node pack into COMFYUI_DIR/custom_nodes/

Also `python -m styleid_guidance ...` and `accelerate launch -m styleid_guidance train ...`.
User mistakes print one line `styleid <command>: error: ...` and exit with code 2.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable, Sequence

from ..errors import run_cli
from .parsing import Parser

# (subcommand, module with `register(subparsers)`), in the order `styleid --help` lists them
SUBCOMMANDS = (
    ("verify", "styleid_guidance.cli.verify"),
    ("embed", "styleid_guidance.cli.embed"),
    ("score", "styleid_guidance.cli.score"),
    ("push", "styleid_guidance.cli.push"),
    ("eval", "styleid_guidance.eval.cli"),
    ("train", "styleid_guidance.train.cli"),
    ("distill", "styleid_guidance.train.distill.cli"),
    ("smoke-data", "styleid_guidance.tiny.smoke_data"),
    ("generate", "styleid_guidance.perception.generate.cli"),
    ("jojogan", "styleid_guidance.jojogan.cli"),
    ("demo", "styleid_guidance.demo.cli"),
    ("study", "styleid_guidance.perception.study.cli"),
    ("psychometric", "styleid_guidance.perception.psychometric.cli"),
    ("comfyui", "styleid_guidance.integrations.comfyui.install"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="styleid", description=__doc__.split("\n\n")[0],
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for _, module in SUBCOMMANDS:
        importlib.import_module(module).register(sub)
    return parser


def _prog(argv: Sequence[str]) -> str:
    """`styleid verify` / `styleid jojogan train`: the name error lines start with."""
    words = ["styleid"]
    for arg in argv:
        if arg.startswith("-"):
            break
        words.append(arg)
        if words[-1] != "jojogan":
            break
    return " ".join(words)


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


def run(argv: Sequence[str]) -> int:
    """Run `styleid ARGV...` and return its exit code: 0, 2 for a user mistake (one line on stderr),
    130 for Ctrl-C. Usage errors exit through argparse (code 2) as usual."""
    argv = list(argv)
    try:
        return run_cli(_main, argv, prog=_prog(argv))
    except SystemExit as done:  # argparse: --help (0) and usage errors (2)
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 2)


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point."""
    sys.exit(run(sys.argv[1:] if argv is None else argv))


def alias(command: Sequence[str], old: str) -> Callable[[Sequence[str] | None], int]:
    """A deprecated console script (`styleid-train`, ...) that runs `styleid COMMAND ...`."""

    def entry(argv: Sequence[str] | None = None) -> int:
        print(f"{old} is deprecated and will be removed in the next release; use `styleid {' '.join(command)}`",
              file=sys.stderr)
        return run([*command, *(sys.argv[1:] if argv is None else argv)])

    return entry


train_alias = alias(["train"], "styleid-train")
jojogan_alias = alias(["jojogan", "train"], "styleid-jojogan")
demo_alias = alias(["demo"], "styleid-demo")
