"""InfiniteYou (FLUX) stylisation, unguided vs StyleID-guided with the same seed, as an annotated grid.

    python examples/infiniteyou_guided.py --face me.jpg --style ghibli --levels 2,4,6 --cpu-offload --output outputs/infu.png
    python examples/infiniteyou_guided.py --tiny --output outputs/infiniteyou_tiny.png     # offline smoke run

Real weights (Hub ids or local folders): --base-model (black-forest-labs/FLUX.1-dev, gated: accept its licence
and `hf auth login`), --infiniteyou (ByteDance/InfiniteYou, or a folder with InfuseNetModel/ +
image_proj_model.bin), --arcface-model (facexlib recognition_arcface_ir_se50.pth), --model (kwanY/styleid).
Peak GPU memory (bf16): ~43 GB; --cpu-offload ~30 GB; --quantize-8bit ~24 GB (needs optimum-quanto); both ~16 GB.
Add --guidance-decoder madebyollin/taef1 for cheaper guidance steps.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from examples.common import add_guidance_args, run_guided_example  # noqa: E402
from styleid_guidance.errors import run_cli  # noqa: E402
from styleid_guidance.files.images import load_image  # noqa: E402
from styleid_guidance.pipelines import STYLIZERS  # noqa: E402

ENTRY = STYLIZERS["infiniteyou"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="infiniteyou_guided", description=__doc__.split("\n")[0])
    add_guidance_args(parser)
    parser.set_defaults(output="outputs/infiniteyou_guided.png")
    parser.add_argument("--base-model", default=ENTRY.models["base_model"], help="FLUX.1-dev: Hub id or folder")
    parser.add_argument("--infiniteyou", default=ENTRY.models["infiniteyou"], help="Hub id or folder (repo root or the model-version folder)")
    parser.add_argument("--model-version", default=ENTRY.models["model_version"], choices=("aes_stage2", "sim_stage1"))
    parser.add_argument("--pose", default=None, help="photo whose face keypoints set the pose (default: none, identity only)")
    parser.add_argument("--cpu-offload", action="store_true", help="diffusers model CPU offload (~30 GB peak instead of ~43)")
    parser.add_argument("--quantize-8bit", action="store_true", help="int8 weights via optimum-quanto (~24 GB; ~16 with --cpu-offload)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    pose = load_image(args.pose) if args.pose else None

    def build():
        if args.tiny:
            return ENTRY.load().tiny(device=args.device or "cpu")
        return ENTRY.load().from_pretrained(
            args.base_model, infiniteyou=args.infiniteyou, model_version=args.model_version, arcface=args.arcface_model,
            detector=args.detector, model_rootpath=args.model_rootpath, device=args.device, cpu_offload=args.cpu_offload,
            quantize_8bit=args.quantize_8bit)

    return run_guided_example(args, ENTRY.label, ENTRY.preset, build, **({"pose_image": pose} if pose else {}))


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="infiniteyou_guided"))
