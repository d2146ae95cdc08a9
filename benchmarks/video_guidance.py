"""What identity guidance costs on video pipelines, side by side with unguided sampling, and what decoding only
some latent frames per step saves (the video counterpart of guidance_overhead.py).

1. Pipelines: tiny AnimateDiff (per-frame SD VAE, DDIM), tiny Wan 2.1 text-to-video / image-to-video and Wan 2.2
   TI2V (causal 4x-temporal VAE, FlowMatchEuler), same seed and steps, guidance on every step: unguided, guided with
   `frames_per_step` latent frames a step, and guided on every frame. Runs interleave round by round; medians.
2. The causal Wan VAE's guidance decode alone (forward + backward of the identity loss on the decoded frames),
   with Wan 2.1's real VAE architecture (random weights): the whole clip, the exact prefix up to a step's frames
   (`temporal_context=None`), and context windows of 1 and 0 earlier latent frames, with the windows' error
   against the exact decode (random weights: the error's size is indicative only).

    python benchmarks/video_guidance.py                      # CPU, tiny pipelines + the Wan 2.1 VAE at 64 px
    python benchmarks/video_guidance.py --device cuda --frames 33 --vae-size 480 --rounds 3
    python benchmarks/video_guidance.py --skip-vae           # the pipelines only
    python benchmarks/video_guidance.py --skip-pipelines --frames 33 --frames-per-step 2   # a longer clip's decode

The CPU is printed with the results (name the CPU when quoting a ratio).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from styleid_guidance.devices import cpu_name, resolve_device  # noqa: E402
from styleid_guidance.errors import StyleIDError, run_cli  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_pipelines(args, device: torch.device, loss, face) -> None:
    from styleid_guidance.integrations import (
        IdentityGuidanceCallback,
        prepare_guidance_kwargs,
    )

    from styleid_guidance.tiny.video import (
        tiny_animatediff,
        tiny_prompt_embeds,
        tiny_wan,
    )

    pipes = {"animatediff": (tiny_animatediff(), args.frames, None),
             "wan t2v": (tiny_wan(), 4 * (args.frames // 4) + 1, None),
             "wan i2v": (tiny_wan(image_to_video=True), 4 * (args.frames // 4) + 1, face.resize((args.size, args.size))),
             "wan 2.2 ti2v": (tiny_wan(ti2v=True), 4 * (args.frames // 4) + 1, face.resize((args.size, args.size)))}
    for name, (pipe, frames, image) in pipes.items():
        pipe.to(device)
        latent_frames = frames if name == "animatediff" else (frames - 1) // 4 + 1  # TI2V: the first one is the photo
        setups = {"unguided": None,
                  f"guided, {args.frames_per_step} latent frames/step": IdentityGuidanceCallback(
                      loss, end=1.0, frames_per_step=args.frames_per_step),
                  f"guided, all {latent_frames} latent frames": IdentityGuidanceCallback(loss, end=1.0, frames_per_step=None)}
        extra = {} if image is None else {"image": image}

        def run(cb, pipe=pipe, frames=frames, extra=extra):
            kw = prepare_guidance_kwargs(pipe, cb) if cb is not None else {}
            t0 = time.perf_counter()
            pipe(height=args.size, width=args.size, num_frames=frames, num_inference_steps=args.steps, guidance_scale=2.0,
                 output_type="pt", generator=torch.Generator().manual_seed(0), **tiny_prompt_embeds(pipe), **extra, **kw)
            _sync(device)
            return time.perf_counter() - t0

        run(None)  # warm-up
        times = {label: [] for label in setups}
        for _ in range(args.rounds):
            for label, cb in setups.items():
                times[label].append(run(cb))
        base = statistics.median(times["unguided"])
        print(f"\n{name}: {frames} frames ({latent_frames} latent), {args.size} px, {args.steps} steps, median of {args.rounds}")
        for label in setups:
            t = statistics.median(times[label])
            print(f"  {label:<34} {t:8.2f} s  {t / base:6.2f}x unguided")


def bench_wan_vae(args, device: torch.device, loss) -> None:
    from diffusers import AutoencoderKLWan
    from styleid_guidance.integrations.video import decode_video_frames, frames_for_step

    torch.manual_seed(0)
    vae = AutoencoderKLWan().to(device).eval().requires_grad_(False)  # Wan 2.1's VAE layout, random weights
    latent_frames = (args.frames - 1) // 4 + 1
    side = args.vae_size // 8
    latents = torch.randn(1, 16, latent_frames, side, side, device=device)
    steps = max(1, -(-latent_frames // args.frames_per_step))  # one rotation: every latent frame once

    def step_cost(frames: list[int], context: int | None) -> tuple[float, torch.Tensor]:
        z = latents.clone().requires_grad_(True)
        t0 = time.perf_counter()
        images = decode_video_frames(vae, z, frames, context)
        loss(images[0]).mean().backward()
        _sync(device)
        return time.perf_counter() - t0, images.detach()

    every = list(range(latent_frames))
    full_t, full = step_cost(every, None)
    rows = [(f"whole clip ({latent_frames} latent frames)", full_t, 0.0)]
    pixel = {f: ([0] if f == 0 else list(range(4 * f - 3, 4 * f + 1))) for f in every}
    for label, context in (("exact prefix (temporal_context=None)", None), ("window, temporal_context=1", 1),
                           ("window, temporal_context=0", 0)):
        ts, errs = [], []
        for g in range(steps):
            frames = frames_for_step(latent_frames, args.frames_per_step, g)
            t, images = step_cost(frames, context)
            ts.append(t)
            if context != 0:  # a 0-context window decodes each latent frame to one pixel frame: no 1:1 reference
                want = full[:, [p for f in frames for p in pixel[f]]]
                errs.append(float((images - want).abs().mean()))
        rows.append((f"{label}, {args.frames_per_step}/step", statistics.mean(ts), statistics.mean(errs) if errs else float("nan")))
    print(f"\nWan 2.1 VAE (real layout, random weights), {args.frames} frames at {args.vae_size} px: one guided step's decode "
          f"+ identity loss, forward and backward, mean over a rotation of {steps} steps")
    print(f"  {'decode':<52} {'s/step':>8} {'x whole':>8} {'mean |err|':>11}")
    for label, t, err in rows:
        print(f"  {label:<52} {t:8.2f} {t / full_t:8.2f} {err:11.4f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="video_guidance", description=__doc__.split("\n")[0])
    parser.add_argument("--device", default=None, help="cuda / cpu (default: cuda when available)")
    parser.add_argument("--frames", type=int, default=17, help="video frames (Wan: rounded to 4k+1)")
    parser.add_argument("--frames-per-step", type=int, default=2, help="latent frames decoded per guided step")
    parser.add_argument("--size", type=int, default=64, help="tiny pipelines' frame size in px")
    parser.add_argument("--vae-size", type=int, default=64, help="frame size for the Wan 2.1 VAE measurement")
    parser.add_argument("--steps", type=int, default=4, help="denoising steps")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--skip-vae", action="store_true", help="skip the Wan 2.1 VAE measurement")
    parser.add_argument("--skip-pipelines", action="store_true", help="skip the tiny pipelines (the VAE measurement only)")
    args = parser.parse_args(argv)
    if args.frames < 5 or args.frames_per_step < 1 or args.steps < 1 or args.rounds < 1 or args.size % 16 or args.vae_size % 16:
        raise StyleIDError("need --frames >= 5, --frames-per-step/--steps/--rounds >= 1, sizes multiples of 16")
    device = resolve_device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise StyleIDError("--device cuda: no CUDA device here; drop --device or use cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    from PIL import Image

    from styleid_guidance import StyleIDEncoder, StyleIDLoss

    face = Image.open(Path(__file__).resolve().parents[1] / "examples" / "faces" / "astronaut.jpg").convert("RGB")
    loss = StyleIDLoss(StyleIDEncoder.from_open_clip("test-tiny", pretrained=None, device=device), reference=face, crop="center")
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{cpu_name()}, {torch.get_num_threads()} threads"
    print(f"device {device} ({where}); identity model: test-tiny; guidance at each family's default scale")
    if not args.skip_pipelines:
        bench_pipelines(args, device, loss, face)
    if not args.skip_vae:
        bench_wan_vae(args, device, loss)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="video_guidance"))
