"""Python API mirroring the CLI: align -> invert (e4e) -> fine-tune (JoJoGAN + identity loss) -> stylize.

    jj = JoJoGAN.from_pretrained("models/stylegan2-ffhq-config-f.pt", "models/e4e_ffhq_encode.pt")
    g = jj.finetune(["style.png"], identity_loss="styleid", num_iter=300)
    jj.stylize("me.jpg", g).save("me_stylized.png")

`JoJoGAN.tiny()` builds random small models offline (tests, demo smoke runs).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from PIL import Image
from torch import Tensor, nn

from styleid_guidance.errors import StyleIDError
from styleid_guidance.devices import resolve_device
from styleid_guidance.files.images import ImageInput, to_pil, to_tensor
from styleid_guidance.options import DEFAULT_DETECTOR, OFFLINE_DETECTOR

from . import checkpoints
from .align import align_face, center_crop, ffhq_face_region
from .e4e import E4EInverter, Encoder4Editing
from .stylegan2 import Discriminator, Generator
from .config import ID_LOSSES
from .finetune import FinetuneConfig, Progress, finetune


def _tiny_styleid_encoder() -> nn.Module:
    from styleid_guidance.encoder.model import StyleIDEncoder

    return StyleIDEncoder.from_open_clip("test-tiny", pretrained=None)


def _random_arcface() -> nn.Module:
    from styleid_guidance.baselines.arcface import build_arcface_backbone

    return build_arcface_backbone()


class JoJoGAN:
    def __init__(self, generator: Generator, discriminator: Discriminator | None, inverter: E4EInverter, *,
                 device: str | torch.device | None = None, detector: str = DEFAULT_DETECTOR, model_rootpath: str | None = None,
                 identity_models: Mapping[str, Any] | None = None):
        self.device = resolve_device(device)
        self.generator = generator.to(self.device).eval().requires_grad_(False)
        # None is enough for stylizing; fine-tuning needs the pretrained discriminator
        self.discriminator = discriminator.to(self.device).eval().requires_grad_(False) if discriminator is not None else None
        self.inverter = inverter.to(self.device).eval()
        if inverter.latent_avg.shape != (generator.n_latent, generator.style_dim):
            raise StyleIDError(f"e4e gives w+ of shape {tuple(inverter.latent_avg.shape)}, but the generator needs "
                               f"({generator.n_latent}, {generator.style_dim}); use the e4e checkpoint for this --size")
        self.detector = detector
        self.model_rootpath = model_rootpath
        # name -> module / path / zero-argument factory, used when finetune gets identity_loss="styleid"|"arcface"
        self.identity_models: dict[str, Any] = dict(identity_models or {})

    @property
    def size(self) -> int:
        return self.generator.size

    # ---- construction ------------------------------------------------------------------------
    @classmethod
    def tiny(cls, size: int = 64, device: str | torch.device = "cpu", seed: int = 0) -> "JoJoGAN":
        """Random small generator / discriminator / e4e (offline, seconds on CPU); tiny random identity models."""
        style_dim = 32
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            generator = Generator(size, style_dim, 2, channel_multiplier=1, channel_max=32)
            discriminator = Discriminator(size, channel_multiplier=1, channel_max=32)
            encoder = Encoder4Editing(50, "ir_se", stylegan_size=size, style_dim=style_dim, width=8, input_size=64).eval()
            latent_avg = generator.mean_latent(1000)[0]
        tiny_models = {"styleid": _tiny_styleid_encoder, "arcface": _random_arcface}
        return cls(generator, discriminator, E4EInverter(encoder, latent_avg), device=device, detector=OFFLINE_DETECTOR,
                   identity_models=tiny_models)

    @classmethod
    def from_pretrained(cls, stylegan_ckpt: str | os.PathLike, e4e_ckpt: str | os.PathLike, size: int = 1024,
                        device: str | torch.device | None = None, detector: str = DEFAULT_DETECTOR,
                        model_rootpath: str | None = None) -> "JoJoGAN":
        """Load `stylegan2-ffhq-config-f.pt` (g_ema + d) and `e4e_ffhq_encode.pt`."""
        generator, discriminator = checkpoints.load_stylegan(stylegan_ckpt, size=size)
        inverter = checkpoints.load_e4e(e4e_ckpt, stylegan_size=size)
        return cls(generator, discriminator, inverter, device=device, detector=detector, model_rootpath=model_rootpath)

    # ---- steps ----------------------------------------------------------------------------------
    def align(self, image: ImageInput, align: bool = True) -> Image.Image:
        """FFHQ-aligned crop at the generator size (or a centre crop with align=False)."""
        if not align:
            return center_crop(image, self.size)
        name = str(image) if isinstance(image, (str, os.PathLike)) else None
        return align_face(image, self.size, detector=self.detector, model_rootpath=self.model_rootpath, name=name)

    @torch.no_grad()
    def invert(self, image: ImageInput, align: bool = True) -> Tensor:
        """w+ latent [1, n_latent, style_dim] of a face (aligned first)."""
        return self.inverter.invert_images([self.align(image, align)])  # upstream's uint8 resize to e4e's input

    def build_identity_loss(self, identity_loss: Any, id_model: Any = None):
        """"styleid" / "arcface" / "none" / None / an IdentityLoss -> IdentityLoss or None. "none" builds nothing."""
        if identity_loss is None or identity_loss == "none":
            return None
        if not isinstance(identity_loss, str):
            return identity_loss
        if identity_loss not in ID_LOSSES:
            raise StyleIDError(f"identity_loss must be one of {', '.join(ID_LOSSES)} or an IdentityLoss, got {identity_loss!r}")
        from styleid_guidance.identity_losses import build_identity_loss

        model = id_model if id_model is not None else self.identity_models.get(identity_loss)
        if callable(model) and not isinstance(model, nn.Module):
            model = model()
        # generator output is FFHQ-aligned: the face's place is known, no detector runs on stylised images
        return build_identity_loss(identity_loss, model=model, device=self.device, crop="face",
                                   face_region=ffhq_face_region(), model_rootpath=self.model_rootpath)

    def finetune(self, style_images: ImageInput | Sequence[ImageInput], identity_loss: Any = "styleid", id_weight: float = 1.0,
                 num_iter: int = 300, preserve_color: bool = False, alpha: float = 1.0, lr: float = 2e-3, seed: int = 0,
                 progress: Progress | None = None, *, align: bool = True, latents: Tensor | None = None, id_model: Any = None,
                 sample_every: int = 0, sample_dir: str | os.PathLike | None = None, show_progress: bool = True,
                 precision: str | None = None) -> Generator:
        """Fine-tune a copy of the generator on the style reference(s); returns the new generator.

        identity_loss: "styleid" | "arcface" | "none" | an IdentityLoss. latents: precomputed w+
        [N, n_latent, D] (skips e4e). progress(i, n, losses) is called after every iteration. precision: the
        identity term's ("auto" = bf16 where native; None = the loss's own, else auto).
        """
        if self.discriminator is None:
            raise StyleIDError("fine-tuning needs the StyleGAN2 discriminator: build with JoJoGAN.from_pretrained(stylegan_ckpt, e4e_ckpt)")
        images = list(style_images) if isinstance(style_images, (list, tuple)) else [style_images]
        if not images:
            raise StyleIDError("style_images: give at least one style reference image")
        config = FinetuneConfig(max_steps=num_iter, lr=lr, alpha=alpha, preserve_color=preserve_color, id_weight=id_weight, seed=seed)
        config.validate()
        aligned = [self.align(im, align) for im in images]
        targets = to_tensor(aligned, device=self.device) * 2 - 1
        if latents is None:
            latents = self.inverter.invert_images(aligned)
        elif latents.shape != (len(images), self.generator.n_latent, self.generator.style_dim):
            raise StyleIDError(f"latents must be [{len(images)}, {self.generator.n_latent}, {self.generator.style_dim}], got {tuple(latents.shape)}")
        if isinstance(identity_loss, str) and identity_loss not in ID_LOSSES:
            raise StyleIDError(f"identity_loss must be one of {', '.join(ID_LOSSES)} or an IdentityLoss, got {identity_loss!r}")
        loss = self.build_identity_loss(identity_loss, id_model) if id_weight > 0 else None
        if sample_dir is not None:
            Path(sample_dir).mkdir(parents=True, exist_ok=True)
        return finetune(self.generator, self.discriminator, latents, targets, config, identity_loss=loss, progress=progress,
                        sample_every=sample_every, sample_dir=sample_dir, show_progress=show_progress, precision=precision)

    @torch.no_grad()
    def stylize(self, face: ImageInput, generator: Generator | None = None, align: bool = True) -> Image.Image:
        """Invert `face` with e4e and render it with the fine-tuned generator (the original one if None)."""
        generator = (generator or self.generator).to(self.device).eval()
        image, _ = generator([self.invert(face, align)], input_is_latent=True, randomize_noise=False)
        return to_pil(((image[0] + 1) / 2).clamp(0, 1))

    # ---- checkpoints ---------------------------------------------------------------------------
    def save_style(self, generator: Generator, path: str | os.PathLike, **settings: Any) -> Path:
        return checkpoints.save_style(generator, path, **settings)

    def load_style(self, path: str | os.PathLike) -> Generator:
        generator = checkpoints.load_style(path)
        if generator.config != self.generator.config:
            raise StyleIDError(f"{path}: style checkpoint is for {generator.config}, but this JoJoGAN has {self.generator.config}")
        return generator.to(self.device)
