"""Loading and saving the public checkpoint formats, with one-line errors for the usual mistakes.

- `stylegan2-ffhq-config-f.pt` (rosinality): {"g_ema", "d", optional "g", "latent_avg"}.
- JoJoGAN style checkpoints: {"g": generator state dict} (we add a "jojogan" dict of settings;
  upstream code ignores it).
- `e4e_ffhq_encode.pt`: {"state_dict": {"encoder.*", "decoder.*"}, "latent_avg": [18, 512], "opts": {...}}.

Everything is read with `torch.load(weights_only=True)`: these files hold only tensors, dicts and
plain values. rosinality *training* checkpoints also pickle an `argparse.Namespace`; it is
allow-listed (a plain attribute bag) so they load too.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from styleid_guidance.errors import StyleIDError
from styleid_guidance.files.atomic import atomic_write
from styleid_guidance.files.safeload import load_weights_only

from .e4e import E4EInverter, Encoder4Editing
from .stylegan2 import Discriminator, Generator

STYLE_FORMAT = "jojogan-style-v1"


def load_checkpoint(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """`torch.load(weights_only=True)` on CPU; a StyleIDError naming the file and what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise StyleIDError(f"{path}: {what} checkpoint not found; download it or give its path")
    # rosinality training checkpoints also pickle their argparse.Namespace: a plain attribute bag
    ckpt = load_weights_only(path, f"{what} checkpoint", allow=[argparse.Namespace])
    if not isinstance(ckpt, dict):
        raise StyleIDError(f"{path}: expected a dict checkpoint for the {what}, got {type(ckpt).__name__}")
    return ckpt


def load_state(module: nn.Module, state: Mapping[str, torch.Tensor], path: str | os.PathLike, what: str) -> None:
    """`load_state_dict(strict=True)`, turning key/shape mismatches into one clear line."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    bad_shape = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or bad_shape:
        parts = []
        if bad_shape:
            k = bad_shape[0]
            parts.append(f"{len(bad_shape)} shape mismatches (e.g. {k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)})")
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
        raise StyleIDError(f"{path}: does not fit the {what} ({'; '.join(parts)}); wrong file, or a checkpoint for another resolution?")
    module.load_state_dict(state, strict=True)


def _pick(ckpt: Mapping[str, Any], keys: tuple[str, ...], path: str | os.PathLike, what: str) -> Mapping[str, torch.Tensor]:
    for key in keys:
        if isinstance(ckpt.get(key), Mapping):
            return ckpt[key]
    found = ", ".join(sorted(map(str, ckpt))[:8]) or "nothing"
    raise StyleIDError(f"{path}: no {' / '.join(repr(k) for k in keys)} entry for the {what} (found: {found})")


def load_stylegan(path: str | os.PathLike, size: int = 1024, style_dim: int = 512, n_mlp: int = 8,
                  channel_multiplier: int = 2, channel_max: int = 512, with_discriminator: bool = True) -> tuple[Generator, Discriminator | None]:
    """The pretrained generator (`g_ema`, or `g`) and discriminator (`d`) from a rosinality checkpoint."""
    ckpt = load_checkpoint(path, "StyleGAN2")
    generator = Generator(size, style_dim, n_mlp, channel_multiplier, channel_max=channel_max)
    load_state(generator, _pick(ckpt, ("g_ema", "g"), path, "StyleGAN2 generator"), path, f"{size}-px StyleGAN2 generator")
    discriminator = None
    if with_discriminator:
        discriminator = Discriminator(size, channel_multiplier, channel_max=channel_max)
        load_state(discriminator, _pick(ckpt, ("d",), path, "StyleGAN2 discriminator"), path, f"{size}-px StyleGAN2 discriminator")
    return generator, discriminator


def load_e4e(path: str | os.PathLike, stylegan_size: int = 1024, **encoder_kwargs: Any) -> E4EInverter:
    """The e4e encoder and its `latent_avg` from `e4e_ffhq_encode.pt` (encoder_kwargs: small test variants)."""
    ckpt = load_checkpoint(path, "e4e")
    state = _pick(ckpt, ("state_dict",), path, "e4e encoder")
    encoder_state = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
    if not encoder_state:
        raise StyleIDError(f"{path}: has no 'encoder.*' weights; is it an e4e checkpoint?")
    opts = ckpt.get("opts") if isinstance(ckpt.get("opts"), Mapping) else {}
    if opts.get("encoder_type", "Encoder4Editing") != "Encoder4Editing":
        raise StyleIDError(f"{path}: encoder_type is {opts['encoder_type']!r}, not Encoder4Editing")
    stylegan_size = int(opts.get("stylegan_size", stylegan_size))
    encoder = Encoder4Editing(50, "ir_se", stylegan_size=stylegan_size, **encoder_kwargs)
    load_state(encoder, encoder_state, path, "e4e encoder (Encoder4Editing(50, 'ir_se'))")
    latent_avg = ckpt.get("latent_avg")
    if not isinstance(latent_avg, torch.Tensor):
        raise StyleIDError(f"{path}: no 'latent_avg' tensor; is it an e4e checkpoint?")
    return E4EInverter(encoder.eval(), latent_avg)


def save_style(generator: Generator, path: str | os.PathLike, **settings: Any) -> Path:
    """Write a JoJoGAN style checkpoint ({"g": state dict}, the upstream format) atomically."""
    meta = {"format": STYLE_FORMAT, "generator": generator.config, **settings}
    state = {k: v.detach().cpu() for k, v in generator.state_dict().items()}
    with atomic_write(path) as tmp:
        torch.save({"g": state, "jojogan": meta}, tmp)
    return Path(path)


def load_style(path: str | os.PathLike, size: int | None = None) -> Generator:
    """A fine-tuned generator from a JoJoGAN style checkpoint (ours, or upstream's 1024-px ones)."""
    ckpt = load_checkpoint(path, "JoJoGAN style")
    state = _pick(ckpt, ("g", "g_ema"), path, "JoJoGAN style generator")
    meta = ckpt.get("jojogan") if isinstance(ckpt.get("jojogan"), Mapping) else {}
    cfg = dict(meta.get("generator") or {"size": size or 1024, "style_dim": 512, "n_mlp": 8, "channel_multiplier": 2, "channel_max": 512})
    if size is not None and size != cfg["size"]:
        raise StyleIDError(f"{path}: is a {cfg['size']}-px style checkpoint, but size {size} was asked for; use a matching file")
    generator = Generator(cfg["size"], cfg["style_dim"], cfg["n_mlp"], cfg["channel_multiplier"], channel_max=cfg["channel_max"])
    load_state(generator, state, path, f"{cfg['size']}-px StyleGAN2 generator")
    return generator.eval()
