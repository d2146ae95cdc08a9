"""e4e (encoder4editing) inversion encoder with the key names of `e4e_ffhq_encode.pt`.

`Encoder4Editing(50, "ir_se", stylegan_size=1024)` is an IR-SE50 backbone with a feature pyramid:
w0 from the coarsest features is repeated over all w+ layers and each further layer adds a
delta predicted from coarse (layers 1-2), middle (3-6) or fine (7+) features. The encoder
predicts offsets from the generator's average latent; `E4EInverter` adds `latent_avg`.

Keyword additions for small test models (defaults = upstream): `style_dim`, `width` (backbone
base width, 64 upstream) and `input_size` (256 upstream).
"""
from __future__ import annotations

import itertools
import math
from typing import Any, Sequence

import torch
from PIL import Image
from torch import Tensor, nn
from torch.nn import functional as F

from .stylegan2 import EqualLinear

# (stage depth multiplier, units) per IR-ResNet depth; stage widths are width * (1, 2, 4, 8).
_UNITS = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)}
E4E_INPUT_SIZE = 256


class SEModule(nn.Module):
    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        hidden = max(channels // reduction, 1)  # >= 1 keeps tiny test widths valid
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        return x * self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))


class BottleneckIR(nn.Module):
    """Pre-activation IR unit (BN-conv-PReLU-conv-BN[-SE]) with an identity or 1x1 shortcut."""

    def __init__(self, in_channel: int, depth: int, stride: int, se: bool):
        super().__init__()
        if in_channel == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(in_channel, depth, 1, stride, bias=False), nn.BatchNorm2d(depth))
        layers = [nn.BatchNorm2d(in_channel), nn.Conv2d(in_channel, depth, 3, 1, 1, bias=False), nn.PReLU(depth),
                  nn.Conv2d(depth, depth, 3, stride, 1, bias=False), nn.BatchNorm2d(depth)]
        if se:
            layers.append(SEModule(depth, 16))
        self.res_layer = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class GradualStyleBlock(nn.Module):
    """Strided convs from a `spatial`-sized feature map down to 1x1, then an EqualLinear."""

    def __init__(self, in_c: int, out_c: int, spatial: int):
        super().__init__()
        self.out_c = out_c
        modules: list[nn.Module] = [nn.Conv2d(in_c, out_c, 3, stride=2, padding=1), nn.LeakyReLU()]
        for _ in range(int(math.log2(spatial)) - 1):
            modules += [nn.Conv2d(out_c, out_c, 3, stride=2, padding=1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*modules)
        self.linear = EqualLinear(out_c, out_c, lr_mul=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(self.convs(x).view(-1, self.out_c))


def _upsample_add(x: Tensor, y: Tensor) -> Tensor:
    return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y


class Encoder4Editing(nn.Module):
    def __init__(self, num_layers: int = 50, mode: str = "ir_se", opts: Any = None, *, stylegan_size: int | None = None,
                 style_dim: int = 512, width: int = 64, input_size: int = E4E_INPUT_SIZE):
        super().__init__()
        if num_layers not in _UNITS:
            raise ValueError(f"num_layers={num_layers}: must be one of {sorted(_UNITS)}")
        if mode not in ("ir", "ir_se"):
            raise ValueError(f"mode={mode!r}: must be 'ir' or 'ir_se'")
        if stylegan_size is None:
            stylegan_size = getattr(opts, "stylegan_size", 1024)
        self.input_size = input_size
        self.input_layer = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.PReLU(width))
        units, in_c = [], width
        for stage, n in enumerate(_UNITS[num_layers]):
            depth = width * 2**stage
            for u in range(n):
                units.append(BottleneckIR(in_c, depth, 2 if u == 0 else 1, se=mode == "ir_se"))
                in_c = depth
        self.body = nn.Sequential(*units)
        # Taps at the end of stages 2, 3 and 4 (strides 4, 8, 16 of the input).
        ends = list(itertools.accumulate(_UNITS[num_layers]))
        self._taps = (ends[1] - 1, ends[2] - 1, ends[3] - 1)

        feat = width * 8
        self.style_count = 2 * int(math.log2(stylegan_size)) - 2
        self.coarse_ind, self.middle_ind = 3, 7
        self.styles = nn.ModuleList()
        for i in range(self.style_count):
            spatial = input_size // (16 if i < self.coarse_ind else 8 if i < self.middle_ind else 4)
            self.styles.append(GradualStyleBlock(feat, style_dim, spatial))
        self.latlayer1 = nn.Conv2d(width * 4, feat, 1)
        self.latlayer2 = nn.Conv2d(width * 2, feat, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Images normalised to [-1, 1] at `input_size` -> w+ offsets (B, style_count, style_dim)."""
        x = self.input_layer(x)
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i == self._taps[0]:
                c1 = x
            elif i == self._taps[1]:
                c2 = x
        c3 = x
        w = self.styles[0](c3).unsqueeze(1).repeat(1, self.style_count, 1)
        features = c3
        deltas = [torch.zeros_like(w[:, 0])]
        for i in range(1, self.style_count):
            if i == self.coarse_ind:
                p2 = features = _upsample_add(c3, self.latlayer1(c2))
            elif i == self.middle_ind:
                features = _upsample_add(p2, self.latlayer2(c1))
            deltas.append(self.styles[i](features))
        return w + torch.stack(deltas, 1)


def e4e_input(images: Image.Image | Sequence[Image.Image], size: int = E4E_INPUT_SIZE) -> Tensor:
    """Upstream JoJoGAN's e4e input: Resize(size) (on the PIL image, i.e. PIL's antialiased bilinear in uint8),
    CenterCrop(size), ToTensor, Normalize(0.5, 0.5) -> [B, 3, size, size] in [-1, 1]."""
    from torchvision import transforms

    transform = transforms.Compose([transforms.Resize(size), transforms.CenterCrop(size), transforms.ToTensor(),
                                    transforms.Normalize([0.5] * 3, [0.5] * 3)])
    images = [images] if isinstance(images, Image.Image) else list(images)
    return torch.stack([transform(im.convert("RGB")) for im in images])


class E4EInverter(nn.Module):
    """Images in [0, 1] (any square size) -> w+ latents, as the e4e pSp wrapper does at inference.

    `invert_images` takes PIL images through upstream JoJoGAN's exact preprocessing (`e4e_input`); calling
    the module on tensors resizes in float (antialiased bilinear), which differs by up to one uint8 level."""

    def __init__(self, encoder: Encoder4Editing, latent_avg: Tensor):
        super().__init__()
        self.encoder = encoder
        if latent_avg.ndim == 1:
            latent_avg = latent_avg.unsqueeze(0).repeat(encoder.style_count, 1)
        self.register_buffer("latent_avg", latent_avg.float())

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        size = self.encoder.input_size
        x = images.to(self.latent_avg.device, torch.float32)
        if x.shape[-1] != size or x.shape[-2] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return self.encoder(x * 2 - 1) + self.latent_avg

    @torch.no_grad()
    def invert_images(self, images: Image.Image | Sequence[Image.Image]) -> Tensor:
        """PIL images (e.g. FFHQ-aligned faces) -> w+ latents [B, n_latent, D], preprocessed as upstream."""
        x = e4e_input(images, self.encoder.input_size).to(self.latent_avg.device)
        return self.encoder(x) + self.latent_avg
