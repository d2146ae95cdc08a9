"""JoJoGAN with and without an identity loss, side by side, as one labelled grid.

    python examples/jojogan_identity.py STYLE.png FACE.jpg \
        --stylegan-ckpt models/stylegan2-ffhq-config-f.pt --e4e-ckpt models/e4e_ffhq_encode.pt
    python examples/jojogan_identity.py --tiny          # random tiny models, the shipped faces, offline

Writes --output (default outputs/jojogan_identity.png, git-ignored): the style reference, the aligned
face, then the face stylised by generators fine-tuned with no identity loss, the ArcFace loss and the
StyleID loss, each panel labelled. Flags as `styleid jojogan train` (--max-steps, alias --num-iter /
--num_iter; --id-weight; --stylegan-ckpt; --e4e-ckpt).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from examples.common import FACES_DIR, annotated_grid, save_png  # noqa: E402
from styleid_guidance.cli import flags, parsing, runtime, values  # noqa: E402
from styleid_guidance.errors import StyleIDError, run_cli  # noqa: E402
from styleid_guidance.jojogan.cli import DEFAULT_E4E, DEFAULT_STYLEGAN  # noqa: E402
from styleid_guidance.jojogan.config import FinetuneConfig  # noqa: E402

DEFAULT_STYLE = FACES_DIR / "astronaut_painted.jpg"
DEFAULT_FACE = FACES_DIR / "astronaut.jpg"
TINY_MAX_STEPS = 10  # random tiny models learn nothing from more; keeps --tiny to seconds
ID_LOSSES = (("none", "no identity loss"), ("arcface", "ArcFace identity loss"), ("styleid", "StyleID identity loss"))


def build_parser() -> argparse.ArgumentParser:
    p = parsing.Parser(prog="jojogan_identity", description=__doc__.split("\n")[0])
    p.add_argument("style", nargs="?", default=str(DEFAULT_STYLE), help="style reference image (default: the shipped painting)")
    p.add_argument("face", nargs="?", default=str(DEFAULT_FACE), help="face photo to stylize (default: the shipped photo)")
    flags.add_output(p, "where to save the labelled grid (.png)", required=False, default="outputs/jojogan_identity.png")
    p.add_argument("--stylegan-ckpt", "--stylegan_ckpt", dest="stylegan_ckpt", default=DEFAULT_STYLEGAN, metavar="PATH",
                   help="rosinality StyleGAN2 checkpoint with g_ema and d (default: %(default)s)")
    p.add_argument("--e4e-ckpt", "--e4e_ckpt", dest="e4e_ckpt", default=DEFAULT_E4E, metavar="PATH",
                   help="e4e encoder checkpoint (default: %(default)s)")
    d = FinetuneConfig()
    p.add_argument("--max-steps", "--num-iter", "--num_iter", dest="max_steps", type=int, default=d.max_steps,
                   help=f"fine-tuning iterations per generator (default: %(default)s; at most {TINY_MAX_STEPS} with --tiny)")
    p.add_argument("--id-weight", "--id_weight", dest="id_weight", type=values.finite_float, default=d.id_weight,
                   help="weight of the identity term (default: %(default)s)")
    flags.add_faces(p, crop=False)
    flags.add_device(p)
    flags.add_seed(p)
    flags.add_tiny(p)
    return p


def check_output(path: str | os.PathLike) -> Path:
    """Refuse an output that cannot be written before minutes of fine-tuning, not after."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise StyleIDError(f"--output {path}: the grid is saved as PNG; give a path ending in .png")
    if path.is_dir():
        raise StyleIDError(f"--output {path}: is a folder; give a file path ending in .png")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise StyleIDError(f"--output {path}: cannot write in {folder}; choose another folder")
    return path


def _main(argv=None) -> int:
    from styleid_guidance.files.images import load_image
    from styleid_guidance.jojogan.api import JoJoGAN

    args = build_parser().parse_args(argv)
    if args.max_steps < 1:
        raise StyleIDError(f"--max-steps must be ≥ 1, got {args.max_steps}")
    output = check_output(args.output)
    for what in (args.style, args.face):  # a damaged image fails before any model is loaded
        load_image(what)
    style, face = args.style, args.face  # paths: an error (no face found) names the file
    device = runtime.device_from(args)
    steps = min(args.max_steps, TINY_MAX_STEPS) if args.tiny else args.max_steps
    if args.tiny:
        jj = JoJoGAN.tiny(device=device, seed=args.seed)
    else:  # the same loaders, and the same flag named in an error, as `styleid jojogan train`
        from styleid_guidance.jojogan import checkpoints

        with parsing.for_option("--stylegan-ckpt"):
            generator, discriminator = checkpoints.load_stylegan(args.stylegan_ckpt, size=1024)
        with parsing.for_option("--e4e-ckpt"):
            inverter = checkpoints.load_e4e(args.e4e_ckpt, stylegan_size=1024)
        jj = JoJoGAN(generator, discriminator, inverter, device=device)
    jj.detector = args.detector or jj.detector
    jj.model_rootpath = args.model_rootpath
    # both aligned first: a photo without a face fails here, before any fine-tuning
    panels = [(jj.align(style), f"style reference\n{Path(args.style).name}"), (jj.align(face), f"aligned face\n{Path(args.face).name}")]
    for id_loss, label in ID_LOSSES:
        generator = jj.finetune([style], identity_loss=id_loss, id_weight=args.id_weight, num_iter=steps, seed=args.seed)
        panels.append((jj.stylize(face, generator), label + ("" if id_loss == "none" else f"\nweight {args.id_weight:g}")))
    title = f"JoJoGAN, {steps} steps per generator, seed {args.seed}" + (" (--tiny: random models, not meaningful)" if args.tiny else "")
    save_png(annotated_grid([panels], title=title), output)
    print(f"wrote {output}: " + " | ".join(label.split("\n")[0] for _, label in panels))
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv, prog="jojogan_identity")


if __name__ == "__main__":
    raise SystemExit(main())
