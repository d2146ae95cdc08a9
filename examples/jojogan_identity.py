"""JoJoGAN with and without an identity loss, side by side.

    python examples/jojogan_identity.py STYLE.png FACE.jpg \
        --stylegan_ckpt models/stylegan2-ffhq-config-f.pt --e4e_ckpt models/e4e_ffhq_encode.pt
    python examples/jojogan_identity.py --tiny          # random tiny models, built-in photos, offline

Writes OUT (default jojogan_identity.png): aligned face | --id_loss none | arcface | styleid.
"""
from __future__ import annotations

import argparse

from PIL import Image

from styleid_guidance.jojogan.api import JoJoGAN
from styleid_guidance.errors import run_cli
from styleid_guidance.images import atomic_write


def _main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("style", nargs="?", help="style reference image")
    p.add_argument("face", nargs="?", help="face photo to stylize")
    p.add_argument("--stylegan_ckpt", default="models/stylegan2-ffhq-config-f.pt")
    p.add_argument("--e4e_ckpt", default="models/e4e_ffhq_encode.pt")
    p.add_argument("--num_iter", type=int, default=300)
    p.add_argument("--id_weight", type=float, default=1.0)
    p.add_argument("--tiny", action="store_true", help="random tiny models and skimage photos (offline, seconds)")
    p.add_argument("--out", default="jojogan_identity.png")
    args = p.parse_args(argv)
    if args.tiny:
        import numpy as np
        import skimage.data

        jj = JoJoGAN.tiny()
        face = Image.fromarray(skimage.data.astronaut())
        style = Image.fromarray((np.asarray(face) // 64 * 64).astype("uint8"))  # a posterised stand-in style
        num_iter = min(args.num_iter, 10)
    else:
        if not (args.style and args.face):
            p.error("give STYLE and FACE images (or --tiny)")
        jj = JoJoGAN.from_pretrained(args.stylegan_ckpt, args.e4e_ckpt)
        style, face, num_iter = args.style, args.face, args.num_iter
    panels = [jj.align(face)]
    for id_loss in ("none", "arcface", "styleid"):
        generator = jj.finetune([style], identity_loss=id_loss, id_weight=args.id_weight, num_iter=num_iter)
        panels.append(jj.stylize(face, generator))
    grid = Image.new("RGB", (jj.size * len(panels), jj.size))
    for i, panel in enumerate(panels):
        grid.paste(panel, (i * jj.size, 0))
    with atomic_write(args.out) as tmp:
        grid.save(tmp, format="PNG")
    print(f"wrote {args.out}: aligned face | none | arcface | styleid")
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv, prog="jojogan_identity")


if __name__ == "__main__":
    raise SystemExit(main())
