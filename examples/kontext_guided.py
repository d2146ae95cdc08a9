"""FLUX.1 Kontext instruction stylisation, unguided vs StyleID-guided with the same seed, as an annotated grid.

    python examples/kontext_guided.py --face me.jpg --style ghibli --levels 2,4,6 --cpu-offload --output outputs/kontext.png
    python examples/kontext_guided.py --tiny --output outputs/kontext_tiny.png     # offline smoke run

Real weights (Hub id or local folder): --base-model (black-forest-labs/FLUX.1-Kontext-dev, gated: accept its
licence and `hf auth login`), --model (kwanY/styleid). The style becomes a Kontext instruction
(`presets.kontext_instruction`); the photo is the image Kontext edits. bf16 by default; --cpu-offload and
--quantize-8bit (needs optimum-quanto) lower peak GPU memory as for FLUX.1-dev. Add --guidance-decoder
madebyollin/taef1 for cheaper guidance steps.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from examples.common import add_guidance_args, run_guided_example  # noqa: E402
from styleid_guidance.errors import run_cli  # noqa: E402
from styleid_guidance.pipelines import STYLIZERS  # noqa: E402

ENTRY = STYLIZERS["kontext"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kontext_guided", description=__doc__.split("\n")[0])
    add_guidance_args(parser)
    parser.set_defaults(output="outputs/kontext_guided.png")
    parser.add_argument("--base-model", default=ENTRY.models["base_model"], help="FLUX.1 Kontext [dev]: Hub id or folder")
    parser.add_argument("--cpu-offload", action="store_true", help="diffusers model CPU offload (one model on the GPU at a time)")
    parser.add_argument("--quantize-8bit", action="store_true", help="int8 transformer and T5 weights via optimum-quanto")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def build():
        if args.tiny:
            return ENTRY.load().tiny(device=args.device or "cpu")
        return ENTRY.load().from_pretrained(args.base_model, detector=args.detector, model_rootpath=args.model_rootpath,
                                               device=args.device, cpu_offload=args.cpu_offload, quantize_8bit=args.quantize_8bit)

    return run_guided_example(args, ENTRY.label, ENTRY.preset, build)


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="kontext_guided"))
