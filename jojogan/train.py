"""JoJoGAN one-shot fine-tuning with a pluggable identity loss (`--id_loss styleid|arcface|none`).

Each iteration (as in the JoJoGAN notebook): random w from the frozen mapping network replace the
style reference's w+ on layers 7-17 (or the colour-preserving set) with strength alpha; the
generator renders these style-mixed latents and is trained so that its discriminator features
(4 blocks of the frozen StyleGAN2 discriminator) match the reference's, L1.

The identity term is this project's addition: id_weight x IdentityLoss(G_ft(w), G_frozen(w)), the
fine-tuned output against the *frozen generator's output for the same latent and noise*, paired
per sample. Why the frozen output: JoJoGAN trains on style references only, so there is no source
photo at training time; the person a latent encodes is, by definition, what the original
generator renders for it. Pairing per sample matters because every mixed latent is a different
person (random fine layers, and one reference each). The loss is 0 at the start (same weights)
and only pulls back when the style loss starts to move identity — which is exactly the drift
StyleID should measure robustly across styles while ArcFace confuses style with identity.

CLI: `styleid-jojogan STYLE.png [...] --output style.pt` (also `python -m jojogan.train`).
"""
from __future__ import annotations

import argparse
import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import Tensor
from torch.nn import functional as F
from tqdm.auto import tqdm

from styleid_guidance.errors import StyleIDError, run_cli
from styleid_guidance.images import atomic_write

from .checkpoints import load_checkpoint
from .stylegan2 import Discriminator, Generator

# Colour-preserving swap set of the JoJoGAN notebook (for 18 w+ layers); smaller generators keep
# the entries they have.
PRESERVE_COLOR_LAYERS = (9, 11, 15, 16, 17)
FIRST_SWAP_LAYER = 7
ID_LOSSES = ("styleid", "arcface", "none")

Progress = Callable[[int, int, dict], None]


@dataclass
class FinetuneConfig:
    num_iter: int = 300
    lr: float = 2e-3
    alpha: float = 1.0  # style strength in [0, 1] (the notebook's slider): 1 = swapped layers fully random
    preserve_color: bool = False
    id_weight: float = 1.0  # not stated in the paper; 1 x (1 - cos) is of the order of the style loss
    seed: int = 0

    def validate(self) -> None:
        if self.num_iter < 1:
            raise StyleIDError(f"num_iter must be >= 1, got {self.num_iter}")
        if not self.lr > 0:
            raise StyleIDError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.alpha <= 1.0:
            raise StyleIDError(f"alpha must be in [0, 1] (style strength), got {self.alpha}")
        if self.id_weight < 0:
            raise StyleIDError(f"id_weight must be >= 0, got {self.id_weight}")


def swap_layers(n_latent: int, preserve_color: bool = False) -> list[int]:
    """w+ layers that take random w during training (the reference keeps the others)."""
    if preserve_color:
        return [i for i in PRESERVE_COLOR_LAYERS if i < n_latent]
    return list(range(min(FIRST_SWAP_LAYER, n_latent - 1), n_latent))


def mix_latents(style_latents: Tensor, w: Tensor, layers: Sequence[int], alpha: float) -> Tensor:
    """style_latents [N, L, D] with `layers` moved towards w [N, D] by alpha."""
    mixed = style_latents.clone()
    mixed[:, layers] = (1 - alpha) * style_latents[:, layers] + alpha * w[:, None]
    return mixed


def to_unit(images: Tensor) -> Tensor:
    """Generator output in [-1, 1] -> [0, 1], the identity losses' input range."""
    return ((images + 1) / 2).clamp(0, 1)


def sample_noise(generator: Generator, batch: int, rng: torch.Generator) -> list[Tensor]:
    """Per-sample noise maps, shared by the frozen and fine-tuned generator within an iteration."""
    shapes = [getattr(generator.noises, f"noise_{i}").shape[-1] for i in range(generator.num_layers)]
    return [torch.randn(batch, 1, s, s, generator=rng, device=generator.device) for s in shapes]


def jojogan_losses(student: Generator, frozen: Generator, discriminator: Discriminator, real_features: list[Tensor],
                   latents: Tensor, noise: list[Tensor], identity_loss=None, id_weight: float = 0.0) -> dict[str, Tensor]:
    """One iteration's losses: {"style", optionally "identity", "total"}."""
    image, _ = student([latents], input_is_latent=True, noise=noise)
    fake = discriminator.features(image)
    losses = {"style": sum(F.l1_loss(f, r) for f, r in zip(fake, real_features)) / len(fake)}
    total = losses["style"]
    if identity_loss is not None and id_weight > 0:
        with torch.no_grad():
            reference, _ = frozen([latents], input_is_latent=True, noise=noise)
        identity_loss.set_reference(to_unit(reference))
        losses["identity"] = identity_loss(to_unit(image)).mean()
        total = total + id_weight * losses["identity"]
    losses["total"] = total
    return losses


@torch.no_grad()
def sample_grid(frozen: Generator, student: Generator, latents: Tensor) -> Tensor:
    """Two rows in [0, 1]: the frozen generator's renders, then the fine-tuned ones."""
    from torchvision.utils import make_grid

    before, _ = frozen([latents], input_is_latent=True, randomize_noise=False)
    after, _ = student([latents], input_is_latent=True, randomize_noise=False)
    return make_grid(to_unit(torch.cat([before, after])).cpu(), nrow=len(latents), padding=2)


def save_grid(grid: Tensor, path: str | os.PathLike) -> None:
    from styleid_guidance.images import to_pil

    with atomic_write(path) as tmp:
        to_pil(grid).save(tmp, format="PNG")


def finetune(generator: Generator, discriminator: Discriminator, style_latents: Tensor, targets: Tensor,
             config: FinetuneConfig | None = None, identity_loss=None, progress: Progress | None = None,
             sample_every: int = 0, sample_dir: str | os.PathLike | None = None, probe_latents: Tensor | None = None,
             show_progress: bool = True) -> Generator:
    """Fine-tune a copy of `generator` on style references; the input generator is left unchanged.

    style_latents: [N, n_latent, D] w+ of the references; targets: [N, 3, S, S] in [-1, 1] at the
    generator size. identity_loss: an `IdentityLoss` (its reference is set every iteration) or None.
    """
    config = config or FinetuneConfig()
    config.validate()
    device = generator.device
    frozen = generator.eval().requires_grad_(False)
    discriminator = discriminator.eval().requires_grad_(False)
    student = copy.deepcopy(frozen).train()
    # The mapping network gets no gradient (w comes from the frozen copy): train synthesis only.
    params = [p for name, p in student.named_parameters() if not name.startswith("style.")]
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(params, lr=config.lr, betas=(0.0, 0.99))
    layers = swap_layers(student.n_latent, config.preserve_color)
    style_latents, targets = style_latents.to(device), targets.to(device)
    if targets.shape[-1] != student.size:
        raise StyleIDError(f"style targets are {targets.shape[-1]} px but the generator makes {student.size} px images")
    use_identity = identity_loss is not None and config.id_weight > 0
    if use_identity:
        identity_loss.to(device)
    rng = torch.Generator(device=device).manual_seed(config.seed)
    with torch.no_grad():
        real_features = discriminator.features(targets)  # fixed targets: computed once
    probes = probe_latents if probe_latents is not None else style_latents
    if sample_every and sample_dir is not None:
        save_grid(sample_grid(frozen, student, probes), Path(sample_dir) / "iter_0000.png")

    bar = tqdm(range(config.num_iter), desc="JoJoGAN", disable=not show_progress, leave=False)
    for i in bar:
        n = len(style_latents)
        with torch.no_grad():
            w = frozen.get_latent(torch.randn(n, frozen.style_dim, generator=rng, device=device))
            latents = mix_latents(style_latents, w, layers, config.alpha)
            noise = sample_noise(frozen, n, rng)
        losses = jojogan_losses(student, frozen, discriminator, real_features, latents, noise,
                                identity_loss if use_identity else None, config.id_weight)
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimizer.step()
        values = {k: float(v.detach()) for k, v in losses.items()}
        bar.set_postfix({k: f"{v:.4f}" for k, v in values.items()})
        if progress is not None:
            progress(i, config.num_iter, values)
        if sample_every and sample_dir is not None and ((i + 1) % sample_every == 0 or i + 1 == config.num_iter):
            save_grid(sample_grid(frozen, student, probes), Path(sample_dir) / f"iter_{i + 1:04d}.png")
    return student.eval().requires_grad_(False)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="styleid-jojogan", description="One-shot JoJoGAN fine-tuning with an identity loss.")
    p.add_argument("style_images", nargs="+", help="style reference image(s) (faces)")
    p.add_argument("--output", "-o", required=True, help="style checkpoint to write ({'g': ...}, upstream format)")
    p.add_argument("--stylegan_ckpt", default="models/stylegan2-ffhq-config-f.pt", help="rosinality StyleGAN2 checkpoint (g_ema, d)")
    p.add_argument("--e4e_ckpt", default="models/e4e_ffhq_encode.pt", help="e4e encoder checkpoint")
    p.add_argument("--latents", nargs="+", default=None, help="saved w+ per style image (.pt with 'latent'), instead of e4e inversion")
    p.add_argument("--size", type=int, default=None, help="generator resolution (default 1024, the FFHQ checkpoint; 64 with --tiny)")
    p.add_argument("--id_loss", choices=ID_LOSSES, default="styleid", help="identity term (none = upstream JoJoGAN)")
    p.add_argument("--id_weight", type=float, default=FinetuneConfig.id_weight)
    p.add_argument("--id_model", default=None, help="identity model: Hub id or local path (default: released StyleID / facexlib ArcFace)")
    p.add_argument("--num_iter", type=int, default=FinetuneConfig.num_iter)
    p.add_argument("--lr", type=float, default=FinetuneConfig.lr)
    p.add_argument("--alpha", type=float, default=FinetuneConfig.alpha, help="style strength in [0, 1]")
    p.add_argument("--preserve_color", action="store_true", help="swap only layers 9, 11, 15-17 to keep the photo's colours")
    p.add_argument("--seed", type=int, default=FinetuneConfig.seed)
    p.add_argument("--no_align", action="store_true", help="images are already FFHQ-aligned: centre-crop instead of detecting")
    p.add_argument("--detector", choices=("retinaface", "mtcnn"), default=None, help="face detector (default retinaface; mtcnn with --tiny)")
    p.add_argument("--model_rootpath", default=None, help="folder with facexlib weights (detector, ArcFace)")
    p.add_argument("--sample_every", type=int, default=50, help="write a before/after grid every N iterations (0 = off)")
    p.add_argument("--sample_dir", default=None, help="folder for sample grids (default: OUTPUT_samples/)")
    p.add_argument("--device", default=None, help="cpu / cuda (default: cuda when available)")
    p.add_argument("--tiny", action="store_true", help="random tiny models instead of checkpoints (offline smoke test)")
    return p


def _load_latents(paths: Sequence[str], n_latent: int) -> Tensor:
    out = []
    for path in paths:
        data = load_checkpoint(path, "w+ latent", "--latents")
        latent = data.get("latent")
        if not isinstance(latent, Tensor) or latent.shape[-2] != n_latent:
            raise StyleIDError(f"{path}: expected {{'latent': tensor[{n_latent}, D]}} (a saved e4e inversion); check --latents")
        out.append(latent.reshape(n_latent, -1).float())
    return torch.stack(out)


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv, prog="styleid-jojogan")


def _main(argv: Sequence[str] | None) -> int:
    from .api import JoJoGAN

    args = build_parser().parse_args(argv)
    if args.latents is not None and len(args.latents) != len(args.style_images):
        raise StyleIDError(f"--latents: got {len(args.latents)} files for {len(args.style_images)} style images; give one per image")
    if args.tiny:
        jj = JoJoGAN.tiny(size=args.size or 64, device=args.device or "cpu", seed=args.seed)
    else:
        jj = JoJoGAN.from_pretrained(args.stylegan_ckpt, args.e4e_ckpt, size=args.size or 1024, device=args.device)
    jj.detector = args.detector or jj.detector
    jj.model_rootpath = args.model_rootpath
    output = Path(args.output)
    sample_dir = args.sample_dir or str(output.with_name(output.stem + "_samples"))
    latents = _load_latents(args.latents, jj.generator.n_latent) if args.latents else None
    generator = jj.finetune(args.style_images, identity_loss=args.id_loss, id_weight=args.id_weight, num_iter=args.num_iter,
                            preserve_color=args.preserve_color, alpha=args.alpha, lr=args.lr, seed=args.seed,
                            align=not args.no_align, latents=latents, id_model=args.id_model,
                            sample_every=args.sample_every, sample_dir=sample_dir if args.sample_every else None)
    jj.save_style(generator, output, id_loss=args.id_loss, id_weight=args.id_weight, num_iter=args.num_iter,
                  alpha=args.alpha, preserve_color=args.preserve_color, lr=args.lr, seed=args.seed,
                  style_images=[str(s) for s in args.style_images])
    print(f"wrote {output}" + (f" (samples in {sample_dir}/)" if args.sample_every else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
