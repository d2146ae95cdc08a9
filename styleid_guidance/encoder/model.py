"""The StyleID encoder: an open_clip vision tower with a peft LoRA adapter.

The paper's two branches are one network: the adapted branch runs with LoRA on, the frozen branch
(the anchor of L_reg) runs the same weights inside `adapter_disabled()`, so no second copy of the
backbone is held in memory. Building the tower: `backbones.py`; settings: `config.py`; this
project's folders: `folder_format.py`; the authors' transformers format: `transformers_format.py`.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import save_file

from . import folder_format
from .attention import split_attention_projections, to_fused_names
from .backbones import (TEST_TINY, build_backbone, check_model_name, lora_target_modules, open_clip_config,
                        quick_gelu_for, vit_kwargs_from_open_clip)
from .config import LoraSettings, StyleIDConfig
from ..devices import Precision, resolve_precision
from ..errors import StyleIDError
from ..files.atomic import atomic_dir
from ..hub.resolve import resolve_model_dir
from ..files.images import ImageInput, load_image, to_tensor
from ..options import CROPS, DEFAULT_CROP, DEFAULT_DETECTOR, RELEASED_MODEL
from .preprocess import clip_preprocess
from .transformers_format import load_transformers_folder, write_transformers_folder

CONFIG_NAME = folder_format.CONFIG_NAME
_DEFAULT_LORA = LoraSettings()


class StyleIDEncoder(nn.Module):
    """Style-robust face identity encoder. Embeddings are L2-normalised, cosine = dot product."""

    def __init__(self, visual: nn.Module, config: StyleIDConfig):
        super().__init__()
        self.config = config
        # compute precision of embed / encode_pixels when the call does not say: "fp32" keeps embeddings
        # reproducible; "auto" = bf16 where the device runs it natively (see devices.resolve_precision)
        self.precision = "fp32"
        for p in visual.parameters():
            p.requires_grad_(False)
        # exact LoRA on attention (see attention.py); weights are shared, embeddings unchanged
        self.visual: nn.Module = split_attention_projections(visual)
        if config.lora.lora_rank > 0:
            lora = LoraConfig(
                r=config.lora.lora_rank,
                lora_alpha=config.lora.lora_alpha,
                lora_dropout=config.lora.lora_dropout,
                target_modules=lora_target_modules(visual, config.lora.lora_targets),
            )
            self.visual = get_peft_model(visual, lora)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_open_clip(
        cls,
        model_name: str = "ViT-L-14",
        pretrained: str | None = "openai",
        lora_rank: int = _DEFAULT_LORA.lora_rank,
        lora_alpha: float = _DEFAULT_LORA.lora_alpha,
        lora_dropout: float = _DEFAULT_LORA.lora_dropout,
        lora_targets: str | list[str] = _DEFAULT_LORA.lora_targets,
        device: torch.device | str | None = None,
    ) -> "StyleIDEncoder":
        """A new encoder on any open_clip backbone (e.g. "ViT-L-14"/"openai", "ViT-B-16", a SigLIP2
        name, or the built-in "test-tiny"); `lora_rank=0` gives the plain, un-adapted model."""
        check_model_name(model_name)
        lora = LoraSettings(lora_rank, lora_alpha, lora_dropout, lora_targets)
        visual = build_backbone({"open_clip_model": model_name, "quick_gelu": quick_gelu_for(model_name, pretrained)}, pretrained)
        config = dataclasses.replace(open_clip_config(model_name, pretrained, visual), lora=lora)
        enc = cls(visual, config)
        return enc.to(device) if device is not None else enc

    @classmethod
    def from_pretrained(
        cls,
        id_or_dir: str | os.PathLike = RELEASED_MODEL,
        device: torch.device | str | None = None,
        lora_rank: int | None = None,
        is_trainable: bool = False,
    ) -> "StyleIDEncoder":
        """Load the released checkpoint (transformers `CLIPModel` or `CLIPVisionModelWithProjection`,
        e.g. "kwanY/styleid"), a folder written by `save_pretrained`, or "test-tiny" (the built-in
        random 64-px encoder, the same weights every time; its scores mean nothing).

        `lora_rank` adds a fresh adapter on top of released weights (to fine-tune them further)."""
        if str(id_or_dir) == TEST_TINY:
            with torch.random.fork_rng(devices=[]):  # fixed weights; the caller's RNG is left as it was
                torch.manual_seed(0)
                enc = cls.from_open_clip(TEST_TINY, pretrained=None, lora_rank=lora_rank or 0)
            return enc.to(device) if device is not None else enc
        folder = resolve_model_dir(id_or_dir, kind="StyleID encoder")
        if (folder / CONFIG_NAME).exists():
            enc = cls._from_own_folder(folder, is_trainable=is_trainable)
        elif (folder / "config.json").exists():
            visual, config, state = load_transformers_folder(folder)
            folder_format.load_strict(visual, state, folder)
            enc = cls(visual, dataclasses.replace(config, lora=LoraSettings(lora_rank=lora_rank or 0)))
        else:
            raise StyleIDError(f"{folder}: neither {CONFIG_NAME} nor a transformers config.json; is this a StyleID model folder?")
        return enc.to(device) if device is not None else enc

    @classmethod
    def _from_own_folder(cls, folder: Path, is_trainable: bool) -> "StyleIDEncoder":
        config = folder_format.read_config(folder)
        lora = folder_format.read_lora_settings(folder, config)
        visual = build_backbone(config.backbone)
        backbone = folder_format.read_backbone_state(folder)
        folder_format.load_strict(visual, backbone, folder / folder_format.BACKBONE_WEIGHTS)
        enc = cls(visual, dataclasses.replace(config, lora=lora))
        if lora.lora_rank > 0:
            folder_format.load_adapter(enc.visual, folder)
            for name, p in enc.visual.named_parameters():
                if "lora_" in name:
                    p.requires_grad_(is_trainable)
        return enc

    # ------------------------------------------------------------------ properties
    @property
    def embedding_dim(self) -> int:
        return self.config.embedding_dim

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def image_mean(self) -> tuple[float, ...]:
        return self.config.image_mean

    @property
    def image_std(self) -> tuple[float, ...]:
        return self.config.image_std

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.visual.parameters()).dtype

    @property
    def has_adapter(self) -> bool:
        return isinstance(self.visual, PeftModel)

    @property
    def backbone(self) -> nn.Module:
        """The open_clip vision tower (with LoRA layers injected, if any)."""
        return self.visual.get_base_model() if self.has_adapter else self.visual

    # ------------------------------------------------------------------ adapter control
    @contextlib.contextmanager
    def adapter_disabled(self) -> Iterator[None]:
        """Run the frozen, un-adapted backbone (the paper's second branch)."""
        if self.has_adapter:
            with self.visual.disable_adapter():
                yield
        else:
            yield

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        backbone = self.backbone
        if not hasattr(backbone, "set_grad_checkpointing"):
            raise StyleIDError(f"{type(backbone).__name__} does not support gradient checkpointing")
        backbone.set_grad_checkpointing(enable)

    def merged(self) -> "StyleIDEncoder":
        """A copy with LoRA folded into the backbone weights (plain model, same embeddings)."""
        clone = copy.deepcopy(self)
        if clone.has_adapter:
            clone.visual = clone.visual.merge_and_unload()
            clone.config.lora = dataclasses.replace(clone.config.lora, lora_rank=0)
        return clone

    # ------------------------------------------------------------------ inference
    def encode_pixels(self, pixel_values: torch.Tensor, precision: str | Precision | None = None) -> torch.Tensor:
        """Normalised pixels [B,3,S,S] at `image_size` → L2-normalised float32 embeddings [B,D].

        precision: "fp32" | "bf16" | "fp16" | "auto" (None = `self.precision`). Reduced precision runs the
        tower under autocast (weights stay fp32); the output is normalised in fp32 either way. "fp32" adds
        no autocast of its own, so an enclosing one (accelerate's mixed precision) still applies."""
        with resolve_precision(precision or self.precision, self.device).autocast():
            z = self.visual(pixel_values.to(device=self.device, dtype=self.dtype))
        if isinstance(z, (tuple, list)):
            z = z[0]
        return F.normalize(z.float(), dim=-1)

    def preprocess(self, images: torch.Tensor, crop: str = "center") -> torch.Tensor:
        """[B,3,H,W] in [0,1] → normalised model input; differentiable."""
        return clip_preprocess(images, self.image_size, self.image_mean, self.image_std, crop=crop)

    def embed(
        self,
        images: ImageInput | Sequence[ImageInput],
        crop: str = DEFAULT_CROP,
        batch_size: int = 32,
        detector: str = DEFAULT_DETECTOR,
        model_rootpath: str | None = None,
        precision: str | None = None,
    ) -> torch.Tensor:
        """Embed a [B,3,H,W]/[3,H,W] tensor in [0,1] (differentiable), or PIL images / file paths.

        crop: "center" = the CLIP processor's resize + centre crop; "none" = squash to a square;
        "face" = detect the largest face and crop around it (the released model wants a rough
        face crop; detection itself is not differentiable).
        precision: see `encode_pixels` (None = `self.precision`, "fp32" unless set); outputs are fp32."""
        if crop not in CROPS:
            raise StyleIDError(f"crop must be one of {', '.join(CROPS)}, got {crop!r}")
        precision = resolve_precision(precision or self.precision, self.device)  # once, not per batch
        if isinstance(images, torch.Tensor):
            x = to_tensor(images)
            chunks = [self._embed_tensor(x[i : i + batch_size], crop, detector, model_rootpath, precision)
                      for i in range(0, len(x), batch_size)]
            return torch.cat(chunks)
        items = list(images) if isinstance(images, (list, tuple)) else [images]
        if not items:
            raise StyleIDError("no images given")

        def prepare(start: int) -> torch.Tensor:
            batch = items[start : start + batch_size]
            return torch.stack(list(pool.map(lambda it: self.prepare_image(it, crop, detector, model_rootpath), batch)))

        out = []
        # decoding and resizing release the GIL: a few threads keep the model fed, one batch ahead
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool, torch.no_grad():
            starts = list(range(0, len(items), batch_size))
            ahead = pool.submit(prepare, starts[0])
            for nxt in starts[1:] + [None]:
                batch = ahead.result()
                if nxt is not None:
                    ahead = pool.submit(prepare, nxt)
                out.append(self.encode_pixels(batch.to(self.device, non_blocking=True), precision))
        return torch.cat(out)

    def prepare_image(self, item: ImageInput, crop: str = DEFAULT_CROP, detector: str = DEFAULT_DETECTOR,
                      model_rootpath: str | None = None) -> torch.Tensor:
        """One image → the backbone input [3, S, S] exactly as `embed` prepares it (load, crop, resize, normalise),
        for callers that batch, cache or skip images themselves (`styleid score`)."""
        pil = load_image(item)
        if crop == "center" and self.device.type == "cpu":
            # on CPU, PIL's uint8 resize is ~2x faster than torch's antialiased bicubic on full-size
            # photos, and it is exactly what CLIPImageProcessor does
            return self.preprocess(to_tensor(_pil_resize_shortest(pil, self.image_size)), crop)[0]
        if self.device.type == "cpu":
            x = to_tensor(pil)
        else:  # GPU-side preprocessing: ship uint8 (4x fewer bytes than float), convert and resize there
            x = torch.from_numpy(np.array(pil)).permute(2, 0, 1)[None].to(self.device, non_blocking=True).float().div_(255.0)
        if crop == "face":
            from ..faces.detection import crop_faces

            x = crop_faces(x, out_size=self.image_size, detector=detector, model_rootpath=model_rootpath, names=[str(item) if isinstance(item, (str, os.PathLike)) else "image"])
        return self.preprocess(x, "none" if crop == "face" else crop)[0]

    def _embed_tensor(self, x: torch.Tensor, crop: str, detector: str, model_rootpath: str | None,
                      precision: Precision) -> torch.Tensor:
        x = x.to(self.device, torch.float32)
        if crop == "face":
            from ..faces.detection import crop_faces

            x = crop_faces(x, out_size=self.image_size, detector=detector, model_rootpath=model_rootpath)
            crop = "none"
        return self.encode_pixels(self.preprocess(x, crop), precision)

    def forward(self, images: torch.Tensor, crop: str = DEFAULT_CROP) -> torch.Tensor:
        return self.embed(images, crop=crop)

    # ------------------------------------------------------------------ saving
    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        """Write config + base weights (+ the LoRA adapter, peft format) so the folder is self-contained.
        The folder is written beside its destination and swapped in whole."""
        out = Path(save_directory)
        with atomic_dir(out) as tmp:
            base = {k: v.detach().cpu().contiguous() for k, v in _base_state_dict(self).items()}
            save_file(base, str(tmp / folder_format.BACKBONE_WEIGHTS))
            if self.has_adapter:
                folder_format.save_adapter(self.visual, tmp)
            (tmp / CONFIG_NAME).write_text(json.dumps(self.config.to_dict(), indent=2))
        return out

    def export_transformers(self, save_directory: str | os.PathLike) -> Path:
        """Write a `CLIPVisionModelWithProjection` folder (LoRA merged): the authors' sharing format."""
        spec = self.config.backbone
        vit = spec["vit"] if "vit" in spec else vit_kwargs_from_open_clip(self.backbone, self.config)
        out = Path(save_directory)
        with atomic_dir(out) as tmp:
            write_transformers_folder(self.merged().visual, vit, self.config, tmp)
        return out


# ---------------------------------------------------------------------- helpers
def _pil_resize_shortest(pil: Image.Image, size: int) -> Image.Image:
    w, h = pil.size
    new = (int(size * w / h), size) if h <= w else (size, int(size * h / w))
    return pil if new == (w, h) else pil.resize(new, Image.BICUBIC)


def _base_state_dict(enc: StyleIDEncoder) -> dict[str, torch.Tensor]:
    """Backbone weights without LoRA tensors, under the plain open_clip names."""
    if not enc.has_adapter:
        return to_fused_names(enc.visual.state_dict())
    out = {}
    for key, value in enc.backbone.state_dict().items():
        if "lora_" in key:
            continue
        out[key.replace(".base_layer.", ".")] = value
    return to_fused_names(out)
