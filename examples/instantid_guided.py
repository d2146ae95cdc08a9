"""InstantID stylisation, unguided vs StyleID-guided with the same seed, as an annotated grid.

    python examples/instantid_guided.py --face me.jpg --style anime --levels 2,4,6 --output outputs/instantid.png
    python examples/instantid_guided.py --tiny --output outputs/instantid_tiny.png     # offline smoke run

Real weights (Hub ids or local folders): --base-model (an SDXL checkpoint; the paper uses YamerMIX_v8),
--instantid (a folder with ControlNetModel/ + ip-adapter.bin, InstantX/InstantID), --face-model (insightface
antelopev2: glintr100.onnx), --model (kwanY/styleid), --arcface-model (facexlib IR-SE50). About 15 GB of GPU
memory in fp16; add --guidance-decoder madebyollin/taesdxl for cheaper guidance steps.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from examples.common import add_guidance_args, run_guided_example  # noqa: E402
from styleid_guidance.errors import run_cli  # noqa: E402
from styleid_guidance.pipelines import STYLIZERS  # noqa: E402

ENTRY = STYLIZERS["instantid"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="instantid_guided", description=__doc__.split("\n")[0])
    add_guidance_args(parser)
    parser.set_defaults(output="outputs/instantid_guided.png")
    parser.add_argument("--base-model", default=ENTRY.models["base_model"], help="SDXL checkpoint: Hub id or folder")
    parser.add_argument("--instantid", default=ENTRY.models["instantid"], help="folder or Hub id with ControlNetModel/ + ip-adapter.bin")
    parser.add_argument("--face-model", default=ENTRY.models["face_model"], help="insightface pack name, folder or .onnx file")
    parser.add_argument("--face-root", default=None, help="insightface root (default ~/.insightface)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def build():
        if args.tiny:
            return ENTRY.load().tiny(device=args.device or "cpu")
        return ENTRY.load().from_pretrained(args.base_model, instantid=args.instantid, face_model=args.face_model,
                                                 face_model_root=args.face_root, detector=args.detector, device=args.device)

    return run_guided_example(args, ENTRY.label, ENTRY.preset, build)


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="instantid_guided"))
