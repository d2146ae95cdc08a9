"""Shared pieces of the guided-stylisation examples: flags, identity scorers, annotated side-by-side grids.

Each example runs its stylizer unguided and guided with the same seed and saves one grid: the reference face,
then per strength level the unguided and guided images, each captioned with its StyleID and ArcFace cosine
similarity to the reference.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import PIL.Image
import PIL.ImageDraw
import PIL.ImageFont
import torch

from styleid_guidance.devices import resolve_device
from styleid_guidance.errors import StyleIDError
from styleid_guidance.options import detector_for
from styleid_guidance.files.atomic import atomic_write
from styleid_guidance.files.images import load_image

FACES_DIR = Path(__file__).resolve().parent / "faces"
DEFAULT_FACE = FACES_DIR / "astronaut.jpg"
CAPTION_HEIGHT = 34


def add_guidance_args(parser: argparse.ArgumentParser, output_help: str = "where to save the annotated grid (.png)") -> None:
    """Flags every guided example shares: the same groups and names as the `styleid` command."""
    from styleid_guidance.cli import flags, values
    from styleid_guidance.pipelines.presets import STYLE_PROMPTS

    parser.add_argument("--face", default=str(DEFAULT_FACE), help="reference face photo (default: the bundled astronaut)")
    parser.add_argument("--style", default="pixar", help=f"one of {', '.join(STYLE_PROMPTS)}, or any prompt text")
    flags.add_levels(parser, default="4")
    flags.add_seed(parser)
    flags.add_output(parser, output_help, required=False, default="outputs/guided.png")
    flags.add_identity_guidance(parser)
    flags.add_model(parser)
    flags.add_arcface_model(parser)
    flags.add_faces(parser)
    flags.add_device(parser)
    flags.add_tiny(parser)
    parser.add_argument("--inference-steps", type=values.positive_int, default=None,
                        help="denoising steps (default: the strength preset's)")


def style_prompt(style: str) -> str:
    from styleid_guidance.pipelines.presets import STYLE_PROMPTS

    return STYLE_PROMPTS.get(style, style)


def build_scorers(args: argparse.Namespace, reference: PIL.Image.Image) -> dict[str, torch.nn.Module]:
    """{"StyleID": loss, "ArcFace": loss}, each holding the reference. --tiny: random tiny stand-ins."""
    from styleid_guidance.identity_losses import build_identity_loss

    device = str(resolve_device(args.device))
    if args.tiny:
        from styleid_guidance import StyleIDEncoder
        from styleid_guidance.baselines.arcface import build_arcface_backbone

        styleid_model, arcface_model = StyleIDEncoder.from_pretrained("test-tiny"), build_arcface_backbone()
    else:
        styleid_model, arcface_model = args.model, args.arcface_model
    # --tiny runs offline: MTCNN ships its weights, RetinaFace downloads them
    faces = dict(crop=args.crop, detector=detector_for(args.detector, tiny=args.tiny), model_rootpath=args.model_rootpath)
    return {
        "StyleID": build_identity_loss("styleid", reference, model=styleid_model, device=device, **faces),
        "ArcFace": build_identity_loss("arcface", reference, model=arcface_model, device=device, **faces),
    }


def build_guidance(args: argparse.Namespace, identity_loss: torch.nn.Module):
    from styleid_guidance.integrations import IdentityGuidanceCallback

    decoder = None
    if args.guidance_decoder:
        from diffusers import AutoencoderTiny

        from styleid_guidance.hub.resolve import resolve_model_dir

        folder = resolve_model_dir(args.guidance_decoder, kind="guidance decoder", flag="--guidance-decoder")
        device = identity_loss.device
        decoder = AutoencoderTiny.from_pretrained(folder).to(device).eval().requires_grad_(False)
    kwargs = {} if args.id_scale is None else {"scale": args.id_scale}
    return IdentityGuidanceCallback(identity_loss, mode=args.id_mode, guidance_decoder=decoder, start=args.id_start, end=args.id_end,
                                    augment=args.augment_views, seed=args.seed, **kwargs)


@torch.no_grad()
def caption(image: PIL.Image.Image, scorers: dict[str, torch.nn.Module]) -> str:
    """"StyleID 0.62 · ArcFace 0.41": cosine similarity to each scorer's reference."""
    return "  ".join(f"{name} {float(loss.similarity(image)[0]):.2f}" for name, loss in scorers.items())


def annotated_grid(rows: Sequence[Sequence[tuple[PIL.Image.Image, str]]], tile: int = 256, title: str | None = None) -> PIL.Image.Image:
    """Tiles (image, caption) laid out row by row, each resized to `tile` px with its caption underneath."""
    font = PIL.ImageFont.load_default()
    cols = max(len(r) for r in rows)
    top = CAPTION_HEIGHT if title else 0
    grid = PIL.Image.new("RGB", (cols * tile, top + len(rows) * (tile + CAPTION_HEIGHT)), "white")
    draw = PIL.ImageDraw.Draw(grid)
    if title:
        draw.text((6, 8), title, fill="black", font=font)
    for r, row in enumerate(rows):
        y = top + r * (tile + CAPTION_HEIGHT)
        for c, (image, text) in enumerate(row):
            grid.paste(load_image(image, min_side=1).resize((tile, tile), PIL.Image.LANCZOS), (c * tile, y))
            for k, line in enumerate(text.split("\n")[:2]):
                draw.text((c * tile + 4, y + tile + 3 + 14 * k), line, fill="black", font=font)
    return grid


def save_png(image: PIL.Image.Image, path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise StyleIDError(f"--output {path}: the grid is saved as PNG; give a path ending in .png")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        image.save(tmp, format="PNG")
    return path


def guided_comparison(stylize, face: PIL.Image.Image, prompt: str, levels: Sequence[int], guidance, scorers: dict, seed: int,
                      title: str | None = None) -> PIL.Image.Image:
    """Run `stylize(face, prompt, level, identity_guidance, seed)` unguided and guided per level → grid."""
    from tqdm import tqdm

    rows = []
    for level in tqdm(list(levels), desc="strength levels", unit="level"):
        plain = stylize(face, prompt, strength_level=level, identity_guidance=None, seed=seed)
        guided = stylize(face, prompt, strength_level=level, identity_guidance=guidance, seed=seed)
        rows.append([(face, "reference"), (plain, f"level {level} unguided\n{caption(plain, scorers)}"),
                     (guided, f"level {level} guided\n{caption(guided, scorers)}")])
    return annotated_grid(rows, title=title)


def run_guided_example(args: argparse.Namespace, name: str | Callable[[Any], str], preset: Callable[[int], Any],
                       build_stylizer: Callable[[], Any], **call_kwargs: Any) -> int:
    """The body every guided example shares: check the levels before any model loads, build the stylizer, run it
    unguided and guided per level with the same seed, save the captioned grid. `name` may depend on the stylizer
    (IP-Adapter names its variant); `call_kwargs` go to every stylizer call (--inference-steps adds its own)."""
    for level in args.levels:
        preset(level)  # a bad level fails before any model loads
    face = load_image(args.face)
    stylizer = build_stylizer()
    scorers = build_scorers(args, face)
    guidance = build_guidance(args, scorers["StyleID"])
    prompt = style_prompt(args.style)
    if args.inference_steps is not None:
        call_kwargs["num_inference_steps"] = args.inference_steps

    def stylize(face, prompt, strength_level, identity_guidance, seed):
        return stylizer(face, prompt, strength_level=strength_level, identity_guidance=identity_guidance, seed=seed,
                        **call_kwargs)

    label = name(stylizer) if callable(name) else name
    grid = guided_comparison(stylize, face, prompt, args.levels, guidance, scorers, args.seed,
                             title=f"{label}: {prompt!r}, seed {args.seed}, guidance {args.id_mode} scale "
                                   f"{guidance.scale_for(getattr(stylizer, 'pipe', None))}")
    print(f"saved {save_png(grid, args.output)}")
    return 0
