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

CLI: `styleid jojogan train STYLE.png [...] --output style.pt` (see `jojogan/cli.py`).
"""
from __future__ import annotations

import contextlib
import copy
import os
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import Tensor
from torch.nn import functional as F
from tqdm.auto import tqdm

from styleid_guidance.errors import StyleIDError
from styleid_guidance.files.atomic import atomic_write

from .config import FinetuneConfig
from .stylegan2 import Discriminator, Generator

# Colour-preserving swap set of the JoJoGAN notebook (for 18 w+ layers); smaller generators keep
# the entries they have.
PRESERVE_COLOR_LAYERS = (9, 11, 15, 16, 17)
FIRST_SWAP_LAYER = 7

Progress = Callable[[int, int, dict], None]


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


def identity_precision(identity_loss, precision: str | None) -> str:
    """The identity term's precision: the one asked for, else the loss's own, else "auto" (bf16 where the
    device runs it natively). The generators and the style loss always run in fp32."""
    return precision or getattr(identity_loss, "precision", None) or "auto"


def jojogan_losses(student: Generator, frozen: Generator, discriminator: Discriminator, real_features: list[Tensor],
                   latents: Tensor, noise: list[Tensor], identity_loss=None, id_weight: float = 0.0,
                   precision: str | None = None) -> dict[str, Tensor]:
    """One iteration's losses: {"style", optionally "identity", "total"}; `precision` is the identity term's."""
    image, _ = student([latents], input_is_latent=True, noise=noise)
    fake = discriminator.features(image)
    losses = {"style": sum(F.l1_loss(f, r) for f, r in zip(fake, real_features)) / len(fake)}
    total = losses["style"]
    if identity_loss is not None and id_weight > 0:
        with torch.no_grad():
            reference, _ = frozen([latents], input_is_latent=True, noise=noise)
        using = getattr(identity_loss, "using_precision", None)
        with using(identity_precision(identity_loss, precision)) if using else contextlib.nullcontext():
            identity_loss.set_reference(to_unit(reference))
            losses["identity"] = identity_loss(to_unit(image)).mean().float()
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
    from styleid_guidance.files.images import to_pil

    with atomic_write(path) as tmp:
        to_pil(grid).save(tmp, format="PNG")


def finetune(generator: Generator, discriminator: Discriminator, style_latents: Tensor, targets: Tensor,
             config: FinetuneConfig | None = None, identity_loss=None, progress: Progress | None = None,
             sample_every: int = 0, sample_dir: str | os.PathLike | None = None, probe_latents: Tensor | None = None,
             show_progress: bool = True, precision: str | None = None) -> Generator:
    """Fine-tune a copy of `generator` on style references; the input generator is left unchanged.

    style_latents: [N, n_latent, D] w+ of the references; targets: [N, 3, S, S] in [-1, 1] at the
    generator size. identity_loss: an `IdentityLoss` (its reference is set every iteration) or None.
    precision: the identity term's ("auto" | "fp32" | "bf16" | "fp16"; None = the loss's own, else auto).
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

    bar = tqdm(range(config.max_steps), desc="JoJoGAN", disable=not show_progress, leave=False)
    for i in bar:
        n = len(style_latents)
        with torch.no_grad():
            w = frozen.get_latent(torch.randn(n, frozen.style_dim, generator=rng, device=device))
            latents = mix_latents(style_latents, w, layers, config.alpha)
            noise = sample_noise(frozen, n, rng)
        losses = jojogan_losses(student, frozen, discriminator, real_features, latents, noise,
                                identity_loss if use_identity else None, config.id_weight, precision)
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimizer.step()
        values = {k: float(v.detach()) for k, v in losses.items()}
        bar.set_postfix({k: f"{v:.4f}" for k, v in values.items()})
        if progress is not None:
            progress(i, config.max_steps, values)
        if sample_every and sample_dir is not None and ((i + 1) % sample_every == 0 or i + 1 == config.max_steps):
            save_grid(sample_grid(frozen, student, probes), Path(sample_dir) / f"iter_{i + 1:04d}.png")
    return student.eval().requires_grad_(False)
