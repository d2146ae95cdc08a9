"""`styleid score` on videos against decoding every frame and calling `verify` once per frame: frames per second.

Makes --videos clips of --length frames (PyAV, H.264, sliding crops of skimage's astronaut, 128 px) and one
reference photo, then times, in one process (imports and the first model load paid before timing):

  * score, every frame: `styleid score REF CLIPS/ --frames all --no-cache` (every frame decoded and scored once,
    batched, the reference embedded once): the like-for-like rate;
  * score, default sampling: `--frames 16` (what the benchmarks score): frames of video covered per second;
  * the per-frame loop: decode every frame to PNG with PyAV, then `styleid verify REF FRAME.png` in-process for
    each frame (the model loaded each call, as a shell loop would), and the same with `verify()` in Python on an
    already loaded encoder (the most a per-frame loop can be made to do).

The target (issue 29): score ≥ 5x the per-frame loop's frames/s on a 2-core CPU with test-tiny.

    python benchmarks/video_score.py                  # test-tiny, CPU, 4 clips x 48 frames
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from score_throughput import timed  # the same stopwatch as the image benchmark (this folder is on sys.path)


def make_clips(folder: Path, videos: int, length: int, size: int = 128) -> Path:
    import av
    import numpy as np
    from PIL import Image
    from skimage import data

    img = Image.fromarray(data.astronaut())
    (folder / "clips").mkdir(parents=True)
    for v in range(videos):
        with av.open(str(folder / "clips" / f"clip{v}.mp4"), "w") as out:
            stream = out.add_stream("libx264", rate=24)
            stream.width = stream.height = size
            stream.pix_fmt = "yuv420p"
            for i in range(length):
                s = 300 + (i * 2 + v * 7) % 80
                x, y = 40 + (i * 3 + v * 11) % 100, (i + v * 5) % 60
                frame = np.asarray(img.crop((x, y, x + s, y + s)).resize((size, size)))
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
    ref = folder / "ref.jpg"
    img.crop((90, 20, 420, 350)).resize((size, size)).save(ref, quality=95)
    return ref


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", type=int, default=4)
    p.add_argument("--length", type=int, default=48, help="frames per clip (default: 48)")
    p.add_argument("--model", default="test-tiny")
    p.add_argument("--crop", default="center")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    common = ["--model", args.model, "--crop", args.crop, "--device", args.device]
    from styleid_guidance.cli import run
    from styleid_guidance.devices import cpu_description

    def quiet_run(argv: list[str]) -> None:
        with open(os.devnull, "w") as null:
            old = sys.stdout, sys.stderr
            sys.stdout = sys.stderr = null
            try:
                assert run(argv) == 0
            finally:
                sys.stdout, sys.stderr = old

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["STYLEID_CACHE"] = str(root / "cache")
        ref = make_clips(root, args.videos, args.length)
        clips = sorted((root / "clips").glob("*.mp4"))
        total = args.videos * args.length
        quiet_run(["verify", str(ref), str(ref), *common])  # imports and first-call costs, paid by neither side
        score_all = timed(lambda: quiet_run(["score", str(ref), str(root / "clips"), *common, "--frames", "all",
                                             "--no-cache", "--no-progress"]))
        score_16 = timed(lambda: quiet_run(["score", str(ref), str(root / "clips"), *common, "--no-cache", "--no-progress"]))

        def decode_to_png() -> list[Path]:
            import av

            out = []
            for clip in clips:
                with av.open(str(clip)) as c:
                    for i, frame in enumerate(c.decode(video=0)):
                        path = root / "frames" / f"{clip.stem}_{i:04d}.png"
                        path.parent.mkdir(exist_ok=True)
                        frame.to_image().save(path)
                        out.append(path)
            return out

        frames: list[Path] = []
        decode = timed(lambda: frames.extend(decode_to_png()))
        verify_cli = timed(lambda: [quiet_run(["verify", str(ref), str(f), *common]) for f in frames])
        from styleid_guidance import StyleIDEncoder
        from styleid_guidance.score import verify

        encoder = StyleIDEncoder.from_pretrained(args.model, device=args.device).eval()
        verify_api = timed(lambda: [verify(str(ref), str(f), encoder, crop=args.crop, model_name=args.model) for f in frames])

    import torch

    print(f"CPU: {cpu_description()} ({os.cpu_count()} logical cores), torch threads {torch.get_num_threads()}; model "
          f"{args.model}, crop {args.crop}, device {args.device}; {args.videos} H.264 clips x {args.length} frames of 128 px")
    rows = [
        ("score --frames all (every frame scored)", total / score_all, score_all),
        ("score --frames 16 (frames of video covered)", total / score_16, score_16),
        ("decode every frame + styleid verify per frame", total / (decode + verify_cli), decode + verify_cli),
        ("decode every frame + verify() on a loaded model", total / (decode + verify_api), decode + verify_api),
    ]
    print(f"{'':50s} {'frames/s':>10s} {'seconds':>9s}")
    for name, rate, seconds in rows:
        print(f"{name:50s} {rate:10.1f} {seconds:9.2f}")
    print(f"ratio, every frame scored: score / (decode + verify per frame) = {rows[0][1] / rows[2][1]:.1f}x "
          f"(target >= 5x); against verify() on a loaded model: {rows[0][1] / rows[3][1]:.1f}x")
    print(f"ratio, default 16 sampled frames: {rows[1][1] / rows[2][1]:.1f}x and {rows[1][1] / rows[3][1]:.1f}x")


if __name__ == "__main__":
    main()
