"""IP-Adapter FaceID-Plus stylisation, unguided vs StyleID-guided with the same seed, as an annotated grid.

    python examples/ip_adapter_guided.py --face me.jpg --style pixar --levels 2,4,6 --output outputs/ip_adapter.png
    python examples/ip_adapter_guided.py --tiny --output outputs/ip_adapter_tiny.png     # offline smoke run

Real weights (Hub ids or local folders): --base-model (Realistic Vision V4), --vae (sd-vae-ft-mse), --ip-adapter
+ --weight-name (h94/IP-Adapter-FaceID, ip-adapter-faceid-plusv2_sd15.bin), --image-encoder (CLIP ViT-H),
--face-model (insightface buffalo_l), --model (kwanY/styleid), --arcface-model (facexlib IR-SE50).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from examples.common import add_guidance_args, run_guided_example  # noqa: E402
from styleid_guidance.errors import run_cli  # noqa: E402
from styleid_guidance.pipelines import STYLIZERS  # noqa: E402

ENTRY = STYLIZERS["ip_adapter"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ip_adapter_guided", description=__doc__.split("\n")[0])
    add_guidance_args(parser)
    parser.set_defaults(output="outputs/ip_adapter_guided.png")
    parser.add_argument("--base-model", default=ENTRY.models["base_model"])
    parser.add_argument("--vae", default=ENTRY.models["vae"], help="'none' keeps the base model's VAE")
    parser.add_argument("--ip-adapter", default=ENTRY.models["ip_adapter"], help="Hub id, folder or weight file")
    parser.add_argument("--weight-name", default=ENTRY.models["weight_name"])
    parser.add_argument("--image-encoder", default=ENTRY.models["image_encoder"])
    parser.add_argument("--face-model", default=ENTRY.models["face_model"], help="insightface pack name, folder or .onnx file")
    parser.add_argument("--face-root", default=None, help="insightface root (default ~/.insightface)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def build():
        if args.tiny:
            return ENTRY.load().tiny(device=args.device or "cpu")
        return ENTRY.load().from_pretrained(
            args.base_model, ip_adapter=args.ip_adapter, weight_name=args.weight_name, image_encoder=args.image_encoder,
            vae=None if str(args.vae).lower() == "none" else args.vae, face_model=args.face_model, face_root=args.face_root,
            detector=args.detector, device=args.device)

    return run_guided_example(args, lambda stylizer: f"{ENTRY.label} {stylizer.variant}", ENTRY.preset, build)


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="ip_adapter_guided"))
