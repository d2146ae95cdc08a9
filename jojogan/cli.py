"""`styleid jojogan train` and `styleid jojogan stylize`: JoJoGAN one-shot stylisation with an identity loss.

    styleid jojogan train style.jpg -o my_style.pt --id_loss styleid      # or arcface / none
    styleid jojogan stylize face.jpg --style-ckpt my_style.pt -o stylized/ --side-by-side
    styleid jojogan train style.jpg -o tiny.pt --tiny                     # random tiny models, offline

The flags JoJoGAN users know keep their underscore spelling as an alias (`--id_loss`, `--num_iter`,
`--preserve_color`, `--stylegan_ckpt`, `--e4e_ckpt`, `--style_ckpt`, ...); `--id_loss` is the name
the README uses.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

from ..cli import config_options, flags, parsing, runtime, values
from ..errors import StyleIDError
from ..options import RELEASED_MODEL
from .config import ID_LOSSES, FinetuneConfig

DEFAULT_STYLEGAN = "models/stylegan2-ffhq-config-f.pt"
DEFAULT_E4E = "models/e4e_ffhq_encode.pt"


def _power_of_two(text: str) -> int:
    value = values.positive_int(text)
    if value < 16 or value > 4096 or value & (value - 1):
        raise argparse.ArgumentTypeError(f"must be a power of two from 16 to 4096 (StyleGAN2 doubles its resolution per block), got {value}")
    return value


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--e4e-ckpt", "--e4e_ckpt", dest="e4e_ckpt", default=DEFAULT_E4E, metavar="PATH",
                   help="e4e encoder checkpoint (default: %(default)s)")
    p.add_argument("--no-align", "--no_align", dest="no_align", action="store_true",
                   help="the images are already FFHQ-aligned: centre-crop instead of detecting the face")
    flags.add_faces(p, crop=False)
    flags.add_device(p)
    flags.add_tiny(p)
    flags.add_seed(p)


def register(sub: Any) -> None:
    jj = sub.add_parser("jojogan", help="JoJoGAN one-shot fine-tuning with an identity loss, and stylising with the result",
                        description=__doc__.split("\n\n")[0])
    jsub = jj.add_subparsers(dest="jojogan_command", required=True, metavar="COMMAND")

    t = jsub.add_parser("train", help="fine-tune StyleGAN2 on style reference(s); writes an upstream-format style checkpoint",
                        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("style_images", nargs="+", metavar="STYLE", help="style reference image(s) (faces)")
    flags.add_output(t, "style checkpoint to write (.pt, upstream JoJoGAN format {'g': ...})")
    t.add_argument("--stylegan-ckpt", "--stylegan_ckpt", dest="stylegan_ckpt", default=DEFAULT_STYLEGAN, metavar="PATH",
                   help="rosinality StyleGAN2 checkpoint with g_ema and d (default: %(default)s)")
    t.add_argument("--latents", nargs="+", default=None, metavar="PT",
                   help="saved w+ per style image (.pt with 'latent'), instead of e4e inversion")
    t.add_argument("--size", type=_power_of_two, default=None,
                   help="generator resolution, a power of two from 16 to 4096 (default: 1024, the FFHQ checkpoint; 64 with --tiny)")
    t.add_argument("--overwrite", action="store_true", help="replace an existing --output checkpoint (and its old sample grids)")
    identity = t.add_argument_group("identity term")
    identity.add_argument("--id-loss", "--id_loss", dest="id_loss", choices=ID_LOSSES, default="styleid",
                          help="identity model of the identity term; none = upstream JoJoGAN (default: %(default)s)")
    flags.add_model(identity)
    flags.add_arcface_model(identity)
    flags.add_precision(identity, "auto")  # the identity term only; the generators stay fp32
    g = t.add_argument_group("fine-tuning")
    # FinetuneConfig's fields, as train and distill derive theirs from their configs
    config_options.add_dataclass_options(t, FinetuneConfig, groups={"identity": identity, "fine-tuning": g})
    g.add_argument("--sample-every", "--sample_every", dest="sample_every", type=int, default=50,
                   help="write a before/after grid every N iterations; 0 = off (default: %(default)s)")
    g.add_argument("--sample-dir", "--sample_dir", dest="sample_dir", default=None, metavar="DIR",
                   help="folder for the sample grids (default: OUTPUT_samples/)")
    flags.add_progress(g)
    _add_common(t)
    t.set_defaults(func=run_train)

    s = jsub.add_parser("stylize", help="apply a style checkpoint to face photos",
                        description="Align each face, invert it with e4e and render it with the fine-tuned generator; "
                                    "writes OUTPUT/<face>_<style>.png.")
    s.add_argument("faces", nargs="+", metavar="FACE", help="face photos")
    s.add_argument("--style-ckpt", "--style_ckpt", dest="style_ckpt", required=True, metavar="PT",
                   help="style checkpoint written by `styleid jojogan train` (or an upstream JoJoGAN .pt)")
    flags.add_output(s, "folder for the results (default: stylized)", required=False, default="stylized")
    s.add_argument("--side-by-side", "--side_by_side", dest="side_by_side", action="store_true",
                   help="save the aligned input and the result next to each other")
    flags.add_progress(s)
    _add_common(s)
    s.set_defaults(func=run_stylize)


def _load_latents(paths: Sequence[str], n_latent: int) -> Any:
    import torch

    from . import checkpoints

    out = []
    for path in paths:
        data = checkpoints.load_checkpoint(path, "w+ latent")
        latent = data.get("latent")
        if not isinstance(latent, torch.Tensor) or latent.shape[-2] != n_latent:
            raise StyleIDError(f"--latents {path}: expected {{'latent': tensor[{n_latent}, D]}} (a saved e4e inversion)")
        out.append(latent.reshape(n_latent, -1).float())
    return torch.stack(out)


def _check_outputs(args: argparse.Namespace, output: Path, sample_dir: Path) -> None:
    """Before the fine-tuning: the checkpoint and sample folder can be written, nothing is silently replaced."""
    from ..files.atomic import check_writable_dir, check_writable_file

    if output.suffix != ".pt":
        raise StyleIDError(f"--output {output}: a style checkpoint is a .pt file")
    if output.exists() and not args.overwrite:
        raise StyleIDError(f"--output {output}: exists; pass --overwrite to replace it (and its sample grids)")
    with parsing.for_option("--output"):
        check_writable_file(output)
    if args.sample_every:
        with parsing.for_option("--sample-dir"):
            check_writable_dir(sample_dir)
    for old in sample_dir.glob("iter_*.png"):  # a new run's grids must not sit beside an old run's
        old.unlink()


def run_train(args: argparse.Namespace) -> int:
    from .api import JoJoGAN

    config = FinetuneConfig(**config_options.given_options(args, FinetuneConfig))  # --seed is a field too
    if args.latents is not None and len(args.latents) != len(args.style_images):
        raise StyleIDError(f"--latents: got {len(args.latents)} files for {len(args.style_images)} style images; give one per image")
    output = Path(args.output)
    sample_dir = Path(args.sample_dir or output.with_name(output.stem + "_samples"))
    _check_outputs(args, output, sample_dir)
    device = runtime.device_from(args)
    if args.tiny:
        jj = JoJoGAN.tiny(size=args.size or 64, device=device, seed=args.seed)
    else:
        from . import checkpoints

        size = args.size or 1024
        with parsing.for_option("--stylegan-ckpt"):
            generator, discriminator = checkpoints.load_stylegan(args.stylegan_ckpt, size=size)
        with parsing.for_option("--e4e-ckpt"):
            inverter = checkpoints.load_e4e(args.e4e_ckpt, stylegan_size=size)
        jj = JoJoGAN(generator, discriminator, inverter, device=device)
    jj.detector = args.detector or jj.detector
    jj.model_rootpath = args.model_rootpath
    latents = _load_latents(args.latents, jj.generator.n_latent) if args.latents else None
    id_model = args.model if args.id_loss == "styleid" else args.arcface_model
    if args.tiny and args.model == RELEASED_MODEL:
        id_model = None  # --tiny: the tiny random identity models
    generator = jj.finetune(args.style_images, identity_loss=args.id_loss, id_weight=config.id_weight, num_iter=config.max_steps,
                            preserve_color=config.preserve_color, alpha=config.alpha, lr=config.lr, seed=config.seed,
                            align=not args.no_align, latents=latents, id_model=id_model,
                            sample_every=args.sample_every, sample_dir=str(sample_dir) if args.sample_every else None,
                            precision=args.precision, show_progress=not args.no_progress)
    jj.save_style(generator, output, id_loss=args.id_loss, id_weight=config.id_weight, num_iter=config.max_steps,
                  alpha=config.alpha, preserve_color=config.preserve_color, lr=config.lr, seed=config.seed,
                  style_images=[str(s) for s in args.style_images])
    runtime.command_logger("jojogan train").info(f"wrote {output}" + (f" (samples in {sample_dir}/)" if args.sample_every else ""))
    return 0


def run_stylize(args: argparse.Namespace) -> int:
    from PIL import Image
    from tqdm.auto import tqdm

    from ..files.atomic import atomic_write, check_writable_dir
    from . import checkpoints
    from .api import JoJoGAN

    with parsing.for_option("--output"):
        check_writable_dir(args.output)
    device = runtime.device_from(args)
    with parsing.for_option("--style-ckpt", args.style_ckpt):
        generator = checkpoints.load_style(args.style_ckpt)
    if args.tiny:
        jj = JoJoGAN.tiny(size=generator.size, device=device, seed=args.seed)
        with parsing.for_option("--style-ckpt", args.style_ckpt):
            generator = jj.load_style(args.style_ckpt)  # checks it was made with --tiny
    else:  # stylizing needs no discriminator
        with parsing.for_option("--e4e-ckpt", args.e4e_ckpt):
            inverter = checkpoints.load_e4e(args.e4e_ckpt, stylegan_size=generator.size)
        jj = JoJoGAN(generator, None, inverter, device=device)
    jj.detector = args.detector or jj.detector
    jj.model_rootpath = args.model_rootpath
    out_dir = Path(args.output)
    style = Path(args.style_ckpt).stem
    for face in tqdm(args.faces, desc="stylize", disable=args.no_progress or len(args.faces) < 2):
        aligned = jj.align(face, align=not args.no_align)
        result = jj.stylize(aligned, generator, align=False)
        if args.side_by_side:
            pair = Image.new("RGB", (2 * jj.size, jj.size))
            pair.paste(aligned, (0, 0))
            pair.paste(result, (jj.size, 0))
            result = pair
        path = out_dir / f"{Path(face).stem}_{style}.png"
        with atomic_write(path) as tmp:
            result.save(tmp, format="PNG")
        print(path)
    return 0
