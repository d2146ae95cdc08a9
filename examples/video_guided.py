"""A face photo → a stylised animated portrait (Wan 2.x image-to-video, StyleID-guided), saved as an mp4, with its
identity to the photo scored frame by frame and plotted.

    python examples/video_guided.py --face me.jpg --style pixar --levels 4 --cpu-offload --output outputs/video.mp4
    python examples/video_guided.py --tiny --compare --output outputs/video_tiny.mp4      # offline smoke run

Writes OUTPUT (H.264 mp4, PyAV) and beside it OUTPUT's name with .png: the per-frame similarity curve of
`styleid score --plot` (StyleID, and ArcFace with real weights; frames without a detectable face marked). Several
--levels give one clip per level (`NAME-level4.mp4` ...); --compare also makes the unguided clip with the same seed
(`NAME-unguided.mp4`), to set the two curves side by side.

Real weights (Hub id or local folder): --base-model (Wan-AI/Wan2.1-I2V-14B-480P-Diffusers; Wan 2.2 I2V / TI2V
models load too), --model (kwanY/styleid). The style prompt and level become Wan's prompt and CFG
(`presets.video_prompt`, `presets.wan_video_preset`); the photo is the first frame. bf16; --cpu-offload keeps one
model on the GPU at a time.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from examples.common import add_guidance_args, build_guidance, style_prompt  # noqa: E402
from styleid_guidance.errors import StyleIDError, run_cli  # noqa: E402
from styleid_guidance.pipelines import STYLIZERS  # noqa: E402

ENTRY = STYLIZERS["wan_video"]


def build_parser() -> argparse.ArgumentParser:
    from styleid_guidance.cli import values

    parser = argparse.ArgumentParser(prog="video_guided", description=__doc__.split("\n")[0])
    add_guidance_args(parser, output_help="where to save the clip (.mp4); its similarity plot goes beside it (.png)")
    parser.set_defaults(output="outputs/video_guided.mp4")
    parser.add_argument("--base-model", default=ENTRY.models["base_model"], help="Wan 2.x image-to-video: Hub id or folder")
    parser.add_argument("--cpu-offload", action="store_true", help="diffusers model CPU offload (one model on the GPU at a time)")
    parser.add_argument("--num-frames", type=values.positive_int, default=None,
                        help="clip length in frames, 4k + 1 (default: the stylizer's, 81 = 5 s at 16 fps)")
    parser.add_argument("--fps", type=values.positive_int, default=None, help="frame rate of the mp4 (default: the model's)")
    parser.add_argument("--frames", default="all", metavar="N|all",
                        help="frames scored per clip: N sampled at numpy.linspace(0, n-1, N), or all (default: all)")
    parser.add_argument("--compare", action="store_true", help="also make the unguided clip (same seed) and score it")
    return parser


def output_paths(output: str | Path, levels: Sequence[int], compare: bool) -> dict[tuple[int, bool], Path]:
    """(level, guided) → the mp4 it is written to; checked writable now, before any model loads."""
    from styleid_guidance.files.atomic import check_writable_file

    output = Path(output)
    if output.suffix.lower() != ".mp4":
        raise StyleIDError(f"--output {output}: the clip is saved as mp4; give a path ending in .mp4")
    paths = {}
    for level in levels:
        stem = output.stem + (f"-level{level}" if len(levels) > 1 else "")
        for guided in (True, False) if compare else (True,):
            paths[level, guided] = output.with_name(stem + ("" if guided else "-unguided") + ".mp4")
    for path in paths.values():
        check_writable_file(path)
        check_writable_file(path.with_suffix(".png"))
    return paths


def write_mp4(frames: Sequence[Any], path: str | Path, fps: int) -> Path:
    """PIL frames → an H.264 mp4 (yuv420p, the pixel format players accept), written atomically."""
    import av

    from styleid_guidance.files.atomic import atomic_write

    width, height = frames[0].size
    with atomic_write(path) as tmp, av.open(str(tmp), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=int(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "17"}  # near-lossless: the scores should be the clip's, not the encoder's
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_image(image.convert("RGB"))))
        container.mux(stream.encode())
    return Path(path)


def score_clip(args: argparse.Namespace, video: Path, device: str) -> Any:
    """The clip against the photo, frame by frame, as `styleid score FACE VIDEO --plot` does; the plot is saved
    beside the clip."""
    from styleid_guidance.files.video import parse_frames
    from styleid_guidance.options import detector_for
    from styleid_guidance.score import score
    from styleid_guidance.score.plot import save_plots

    if args.tiny:
        models = ["test-tiny"]
    else:
        models = [args.model, "arcface" + (f"={args.arcface_model}" if args.arcface_model else "")]
    result = score(args.face, video, models, frames=parse_frames(args.frames), crop=args.crop, device=device,
                   detector=detector_for(args.detector, tiny=args.tiny), model_rootpath=args.model_rootpath, cache_dir=None)
    save_plots(result, video.parent)
    return result


def main(argv: list[str] | None = None) -> int:
    from styleid_guidance.devices import resolve_device
    from styleid_guidance.files.images import load_image
    from styleid_guidance.files.video import parse_frames
    from styleid_guidance.identity_losses import build_identity_loss
    from styleid_guidance.options import detector_for
    from styleid_guidance.pipelines.wan_video import check_num_frames

    args = build_parser().parse_args(argv)
    for level in args.levels:
        ENTRY.preset(level)  # a bad level fails before any model loads
    parse_frames(args.frames)
    if args.num_frames is not None:
        check_num_frames(args.num_frames)
    paths = output_paths(args.output, args.levels, args.compare)
    face = load_image(args.face)
    device = str(resolve_device(args.device))
    if args.tiny:
        stylizer = ENTRY.load().tiny(device=device)
    else:
        stylizer = ENTRY.load().from_pretrained(args.base_model, detector=args.detector, model_rootpath=args.model_rootpath,
                                                device=args.device, cpu_offload=args.cpu_offload)
    loss = build_identity_loss("styleid", face, model="test-tiny" if args.tiny else args.model, device=device, crop=args.crop,
                               detector=detector_for(args.detector, tiny=args.tiny), model_rootpath=args.model_rootpath)
    guidance = build_guidance(args, loss)
    overrides = {k: v for k, v in {"num_inference_steps": args.inference_steps, "num_frames": args.num_frames}.items() if v is not None}
    fps = args.fps or stylizer.fps
    prompt = style_prompt(args.style)
    for (level, guided), path in paths.items():
        frames = stylizer(face, prompt, strength_level=level, identity_guidance=guidance if guided else None, seed=args.seed,
                          **overrides)
        write_mp4(frames, path, fps)
        result = score_clip(args, path, device)
        print(f"saved {path} ({len(frames)} frames, {frames[0].size[0]}x{frames[0].size[1]}, {fps} fps) and "
              f"{path.with_suffix('.png')}: level {level}, {'guided' if guided else 'unguided'}")
        for model in result.models:
            print(f"  {model.line()}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="video_guided"))
