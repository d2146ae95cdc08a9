"""The StyleID encoder: an open_clip vision tower with a peft LoRA adapter.

The paper's two branches are one network: the adapted branch runs with LoRA on, the frozen branch
(the anchor of L_reg) runs the same weights inside `adapter_disabled()`, so no second copy of the
backbone is held in memory.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Iterator, Sequence

import open_clip
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from open_clip.transformer import LayerNorm, QuickGELU, VisionTransformer
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file

from .attention import split_attention_projections, to_fused_names
from .convert import hf_vision_to_open_clip, open_clip_to_hf_vision
from .errors import StyleIDError
from .hub import resolve_model_dir
from .images import ImageInput, load_image, to_tensor
from .preprocess import CROPS, OPENAI_MEAN, OPENAI_STD, clip_preprocess

open_clip.add_model_config(Path(__file__).parent / "model_configs")

CONFIG_NAME = "styleid_config.json"
BACKBONE_WEIGHTS = "backbone.safetensors"
RELEASED_ID = "kwanY/styleid"

_MLP_NAMES = ("c_fc", "c_proj", "fc1", "fc2")
_ATTN_LINEAR_NAMES = ("in_proj", "qkv", "q_proj", "k_proj", "v_proj", "proj", "out_proj")


@dataclass
class LoraSettings:
    """LoRA hyper-parameters. alpha/rank = 0.125 follows the public StyleID settings (paper: silent)."""

    rank: int = 8
    alpha: float = 1.0
    dropout: float = 0.0
    targets: str | list[str] = "attn+mlp"  # "attn", "mlp", "attn+mlp", or explicit module names


@dataclass
class StyleIDConfig:
    """Everything needed to rebuild an encoder without the original download."""

    backbone: dict[str, Any]  # {"open_clip_model": name, "quick_gelu": bool} or {"vit": VisionTransformer kwargs}
    image_size: int
    embedding_dim: int
    image_mean: tuple[float, ...] = OPENAI_MEAN
    image_std: tuple[float, ...] = OPENAI_STD
    lora: LoraSettings = field(default_factory=LoraSettings)
    source: str = ""  # provenance: "open_clip:ViT-L-14/openai", "transformers:kwanY/styleid", ...

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StyleIDConfig":
        d = dict(d)
        d["lora"] = LoraSettings(**d.get("lora", {}))
        d["image_mean"] = tuple(d.get("image_mean", OPENAI_MEAN))
        d["image_std"] = tuple(d.get("image_std", OPENAI_STD))
        return cls(**d)


def lora_target_modules(visual: nn.Module, targets: str | Sequence[str]) -> list[str]:
    """Names of the linear layers to adapt: attention projections ("attn") and/or MLP ("mlp")."""
    if not isinstance(targets, str):
        return list(targets)
    wanted = set(targets.split("+"))
    if not wanted <= {"attn", "mlp"}:
        raise StyleIDError(f"lora targets must be 'attn', 'mlp', 'attn+mlp' or a list of module names, got {targets!r}")
    names: list[str] = []
    for name, module in visual.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        leaf = name.rsplit(".", 1)[-1]
        parent = name.rsplit(".", 2)[-2] if "." in name else ""
        if "mlp" in wanted and leaf in _MLP_NAMES:
            names.append(name)
        elif "attn" in wanted and leaf in _ATTN_LINEAR_NAMES and "attn" in parent:
            names.append(name)
    if not names:
        raise StyleIDError(f"no modules match lora targets {targets!r} in this backbone")
    return names


def _vit_from_kwargs(kw: dict[str, Any]) -> VisionTransformer:
    kw = dict(kw)
    act = QuickGELU if kw.pop("act", "quick_gelu") == "quick_gelu" else nn.GELU
    eps = kw.pop("layer_norm_eps", 1e-5)
    return VisionTransformer(**kw, act_layer=act, norm_layer=partial(LayerNorm, eps=eps))


def _build_backbone(spec: dict[str, Any], pretrained: str | None = None) -> nn.Module:
    if "vit" in spec:
        return _vit_from_kwargs(spec["vit"])
    name = spec["open_clip_model"]
    try:
        with _no_random_init_warning():
            model = open_clip.create_model(name, pretrained=pretrained, force_quick_gelu=spec.get("quick_gelu", False))
    except RuntimeError as err:
        raise StyleIDError(f"open_clip model {name!r} with pretrained={pretrained!r}: {str(err).splitlines()[0]}") from None
    return model.visual


class _DropRandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "initialized randomly" not in record.getMessage()


@contextlib.contextmanager
def _no_random_init_warning() -> Iterator[None]:
    """open_clip warns about random init even when we load our own weights right after."""
    root = logging.getLogger()
    f = _DropRandomInitWarning()
    root.addFilter(f)
    try:
        yield
    finally:
        root.removeFilter(f)


def _uses_quick_gelu(visual: nn.Module) -> bool:
    return any(isinstance(m, QuickGELU) for m in visual.modules())


class StyleIDEncoder(nn.Module):
    """Style-robust face identity encoder. Embeddings are L2-normalised, cosine = dot product."""

    def __init__(self, visual: nn.Module, config: StyleIDConfig):
        super().__init__()
        self.config = config
        for p in visual.parameters():
            p.requires_grad_(False)
        # exact LoRA on attention (see attention.py); weights are shared, embeddings unchanged
        self.visual: nn.Module = split_attention_projections(visual)
        if config.lora.rank > 0:
            lora = LoraConfig(
                r=config.lora.rank,
                lora_alpha=config.lora.alpha,
                lora_dropout=config.lora.dropout,
                target_modules=lora_target_modules(visual, config.lora.targets),
            )
            self.visual = get_peft_model(visual, lora)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_open_clip(
        cls,
        model_name: str = "ViT-L-14",
        pretrained: str | None = "openai",
        lora_rank: int = 8,
        lora_alpha: float = 1.0,
        lora_dropout: float = 0.0,
        lora_targets: str | list[str] = "attn+mlp",
        device: torch.device | str | None = None,
    ) -> "StyleIDEncoder":
        """A new encoder on any open_clip backbone (e.g. "ViT-L-14"/"openai", "ViT-B-16", a SigLIP2
        name, or the built-in "test-tiny"); `lora_rank=0` gives the plain, un-adapted model."""
        if model_name not in open_clip.list_models():
            raise StyleIDError(f"unknown open_clip model {model_name!r}; see open_clip.list_models() (or use 'test-tiny')")
        quick_gelu = False
        if pretrained:
            quick_gelu = bool(open_clip.get_pretrained_cfg(model_name, pretrained).get("quick_gelu", False))
        spec = {"open_clip_model": model_name, "quick_gelu": quick_gelu}
        visual = _build_backbone(spec, pretrained)
        mean = getattr(visual, "image_mean", None) or OPENAI_MEAN
        std = getattr(visual, "image_std", None) or OPENAI_STD
        size = visual.image_size if isinstance(visual.image_size, int) else visual.image_size[0]
        dim = _probe_output_dim(visual, size)
        config = StyleIDConfig(
            backbone=spec,
            image_size=int(size),
            embedding_dim=dim,
            image_mean=tuple(mean),
            image_std=tuple(std),
            lora=LoraSettings(lora_rank, lora_alpha, lora_dropout, lora_targets),
            source=f"open_clip:{model_name}/{pretrained or 'random'}",
        )
        enc = cls(visual, config)
        return enc.to(device) if device is not None else enc

    @classmethod
    def from_pretrained(
        cls,
        id_or_dir: str | os.PathLike = RELEASED_ID,
        device: torch.device | str | None = None,
        lora_rank: int | None = None,
        is_trainable: bool = False,
    ) -> "StyleIDEncoder":
        """Load the released checkpoint (transformers `CLIPModel` or `CLIPVisionModelWithProjection`,
        e.g. "kwanY/styleid") or a folder written by `save_pretrained`.

        `lora_rank` adds a fresh adapter on top of released weights (to fine-tune them further)."""
        folder = resolve_model_dir(id_or_dir, kind="StyleID encoder")
        if (folder / CONFIG_NAME).exists():
            enc = cls._from_own_folder(folder, is_trainable=is_trainable)
        elif (folder / "config.json").exists():
            enc = cls._from_transformers_folder(folder, lora_rank or 0)
        else:
            raise StyleIDError(f"{folder}: neither {CONFIG_NAME} nor a transformers config.json; is this a StyleID model folder?")
        return enc.to(device) if device is not None else enc

    @classmethod
    def _from_own_folder(cls, folder: Path, is_trainable: bool) -> "StyleIDEncoder":
        config = StyleIDConfig.from_dict(json.loads((folder / CONFIG_NAME).read_text()))
        visual = _build_backbone(config.backbone)
        weights = folder / BACKBONE_WEIGHTS
        if not weights.exists():
            raise StyleIDError(f"{weights}: missing; the folder was not written by save_pretrained")
        _load_strict(visual, load_file(str(weights)), weights)
        lora, config.lora = config.lora, dataclasses.replace(config.lora, rank=0)
        enc = cls(visual, config)
        if lora.rank > 0:
            if not (folder / "adapter_model.safetensors").exists():
                raise StyleIDError(f"{folder}: config says LoRA rank {lora.rank} but adapter_model.safetensors is missing")
            enc.visual = PeftModel.from_pretrained(visual, str(folder), is_trainable=is_trainable)
            enc.config.lora = lora
        return enc

    @classmethod
    def _from_transformers_folder(cls, folder: Path, lora_rank: int) -> "StyleIDEncoder":
        from transformers import CLIPConfig, CLIPVisionConfig

        raw = json.loads((folder / "config.json").read_text())
        model_type = raw.get("model_type")
        if model_type == "clip":
            full = CLIPConfig.from_pretrained(str(folder))
            vcfg, proj_dim = full.vision_config, full.projection_dim
        elif model_type == "clip_vision_model":
            vcfg = CLIPVisionConfig.from_pretrained(str(folder))
            proj_dim = vcfg.projection_dim
        else:
            raise StyleIDError(f"{folder / 'config.json'}: model_type {model_type!r} is not a CLIP model (expected 'clip' or 'clip_vision_model')")
        if vcfg.hidden_act not in ("quick_gelu", "gelu"):
            raise StyleIDError(f"{folder}: unsupported hidden_act {vcfg.hidden_act!r} (quick_gelu or gelu)")
        vit = {
            "image_size": vcfg.image_size,
            "patch_size": vcfg.patch_size,
            "width": vcfg.hidden_size,
            "layers": vcfg.num_hidden_layers,
            "heads": vcfg.num_attention_heads,
            "mlp_ratio": _mlp_ratio(vcfg.intermediate_size, vcfg.hidden_size),
            "output_dim": proj_dim,
            "act": vcfg.hidden_act,
            "layer_norm_eps": vcfg.layer_norm_eps,
        }
        visual = _vit_from_kwargs(vit)
        hf_state = {k: v for k, v in _read_weights(folder).items() if k.startswith(("vision_model.", "visual_projection."))}
        state, unused = hf_vision_to_open_clip(hf_state)
        if unused:
            raise StyleIDError(f"{folder}: checkpoint has unexpected vision keys, e.g. {unused[0]!r} ({len(unused)} in all)")
        _load_strict(visual, state, folder)
        mean, std, size = _read_image_processor(folder, vcfg.image_size)
        config = StyleIDConfig(
            backbone={"vit": vit},
            image_size=size,
            embedding_dim=proj_dim,
            image_mean=mean,
            image_std=std,
            lora=LoraSettings(rank=lora_rank),
            source=f"transformers:{folder}",
        )
        return cls(visual, config)

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
            clone.config.lora = dataclasses.replace(clone.config.lora, rank=0)
        return clone

    # ------------------------------------------------------------------ inference
    def encode_pixels(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Normalised pixels [B,3,S,S] at `image_size` → L2-normalised float32 embeddings [B,D]."""
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
        crop: str = "center",
        batch_size: int = 32,
        detector: str = "retinaface",
        model_rootpath: str | None = None,
    ) -> torch.Tensor:
        """Embed a [B,3,H,W]/[3,H,W] tensor in [0,1] (differentiable), or PIL images / file paths.

        crop: "center" = the CLIP processor's resize + centre crop; "none" = squash to a square;
        "face" = detect the largest face and crop around it (the released model wants a rough
        face crop; detection itself is not differentiable)."""
        if crop not in CROPS:
            raise StyleIDError(f"crop must be one of {', '.join(CROPS)}, got {crop!r}")
        if isinstance(images, torch.Tensor):
            x = to_tensor(images)
            chunks = [self._embed_tensor(x[i : i + batch_size], crop, detector, model_rootpath) for i in range(0, len(x), batch_size)]
            return torch.cat(chunks)
        items = list(images) if isinstance(images, (list, tuple)) else [images]
        if not items:
            raise StyleIDError("no images given")

        def prepare(start: int) -> torch.Tensor:
            batch = items[start : start + batch_size]
            return torch.stack(list(pool.map(lambda it: self._prepare_one(it, crop, detector, model_rootpath), batch)))

        out = []
        # decoding and resizing release the GIL: a few threads keep the model fed, one batch ahead
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool, torch.no_grad():
            starts = list(range(0, len(items), batch_size))
            ahead = pool.submit(prepare, starts[0])
            for nxt in starts[1:] + [None]:
                batch = ahead.result()
                if nxt is not None:
                    ahead = pool.submit(prepare, nxt)
                out.append(self.encode_pixels(batch.to(self.device, non_blocking=True)))
        return torch.cat(out)

    def _prepare_one(self, item: ImageInput, crop: str, detector: str, model_rootpath: str | None) -> torch.Tensor:
        pil = load_image(item)
        if crop == "center" and self.device.type == "cpu":
            # on CPU, PIL's uint8 resize is ~2x faster than torch's antialiased bicubic on full-size
            # photos, and it is exactly what CLIPImageProcessor does
            return self.preprocess(to_tensor(_pil_resize_shortest(pil, self.image_size)), crop)[0]
        x = to_tensor(pil, device=self.device)
        if crop == "face":
            from .faces import crop_faces

            x = crop_faces(x, out_size=self.image_size, detector=detector, model_rootpath=model_rootpath, names=[str(item) if isinstance(item, (str, os.PathLike)) else "image"])
        return self.preprocess(x, "none" if crop == "face" else crop)[0]

    def _embed_tensor(self, x: torch.Tensor, crop: str, detector: str, model_rootpath: str | None) -> torch.Tensor:
        x = x.to(self.device, torch.float32)
        if crop == "face":
            from .faces import crop_faces

            x = crop_faces(x, out_size=self.image_size, detector=detector, model_rootpath=model_rootpath)
            crop = "none"
        return self.encode_pixels(self.preprocess(x, crop))

    def forward(self, images: torch.Tensor, crop: str = "center") -> torch.Tensor:
        return self.embed(images, crop=crop)

    # ------------------------------------------------------------------ saving
    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        """Write config + base weights (+ the LoRA adapter, peft format) so the folder is self-contained."""
        out = Path(save_directory)
        out.mkdir(parents=True, exist_ok=True)
        base = {k: v.detach().cpu().contiguous() for k, v in _base_state_dict(self).items()}
        save_file(base, str(out / BACKBONE_WEIGHTS))
        if self.has_adapter:
            self.visual.save_pretrained(str(out))
        (out / CONFIG_NAME).write_text(json.dumps(self.config.to_dict(), indent=2))
        return out

    def export_transformers(self, save_directory: str | os.PathLike) -> Path:
        """Write a `CLIPVisionModelWithProjection` folder (LoRA merged): the authors' sharing format."""
        from transformers import CLIPImageProcessor, CLIPVisionConfig

        spec = self.config.backbone
        if "vit" in spec:
            vit = spec["vit"]
        else:
            vit = _vit_kwargs_from_open_clip(self.backbone, self.config)
        merged = self.merged()
        hf_state = open_clip_to_hf_vision({k: v.detach().cpu().contiguous() for k, v in to_fused_names(merged.visual.state_dict()).items()})
        vcfg = CLIPVisionConfig(
            hidden_size=vit["width"],
            intermediate_size=int(vit["width"] * vit["mlp_ratio"]),
            num_hidden_layers=vit["layers"],
            num_attention_heads=vit["heads"],
            image_size=vit["image_size"],
            patch_size=vit["patch_size"],
            hidden_act=vit.get("act", "quick_gelu"),
            layer_norm_eps=vit.get("layer_norm_eps", 1e-5),
            projection_dim=vit["output_dim"],
        )
        vcfg.architectures = ["CLIPVisionModelWithProjection"]
        out = Path(save_directory)
        out.mkdir(parents=True, exist_ok=True)
        vcfg.save_pretrained(str(out))
        save_file(hf_state, str(out / "model.safetensors"), metadata={"format": "pt"})
        size = self.image_size
        CLIPImageProcessor(
            size={"shortest_edge": size},
            crop_size={"height": size, "width": size},
            image_mean=list(self.image_mean),
            image_std=list(self.image_std),
        ).save_pretrained(str(out))
        return out


# ---------------------------------------------------------------------- helpers
def _pil_resize_shortest(pil: Image.Image, size: int) -> Image.Image:
    w, h = pil.size
    new = (int(size * w / h), size) if h <= w else (size, int(size * h / w))
    return pil if new == (w, h) else pil.resize(new, Image.BICUBIC)


def _mlp_ratio(intermediate: int, width: int) -> float:
    """open_clip sizes the MLP as int(width * ratio): make sure that lands exactly on `intermediate`."""
    ratio = intermediate / width
    return ratio if int(width * ratio) == intermediate else (intermediate + 0.5) / width


def _probe_output_dim(visual: nn.Module, size: int) -> int:
    out_dim = getattr(visual, "output_dim", None)
    if isinstance(out_dim, int):
        return out_dim
    with torch.no_grad():
        return int(visual(torch.zeros(1, 3, size, size)).shape[-1])


def _vit_kwargs_from_open_clip(visual: nn.Module, config: StyleIDConfig) -> dict[str, Any]:
    if not isinstance(visual, VisionTransformer) or getattr(visual, "attn_pool", None) is not None:
        raise StyleIDError(f"export_transformers supports CLIP ViT backbones only, not {config.source or type(visual).__name__}")
    block = visual.transformer.resblocks[0]
    width = visual.transformer.width
    return {
        "image_size": config.image_size,
        "patch_size": visual.patch_size[0],
        "width": width,
        "layers": visual.transformer.layers,
        "heads": block.attn.num_heads,
        "mlp_ratio": block.mlp.c_fc.out_features / width,
        "output_dim": config.embedding_dim,
        "act": "quick_gelu" if _uses_quick_gelu(visual) else "gelu",
        "layer_norm_eps": visual.ln_pre.eps,
    }


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


def _load_strict(module: nn.Module, state: dict[str, torch.Tensor], where: object) -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing:
        raise StyleIDError(f"{where}: checkpoint is missing {len(missing)} weights, e.g. {missing[0]!r}; is it the right model?")
    if unexpected:
        raise StyleIDError(f"{where}: checkpoint has {len(unexpected)} unexpected weights, e.g. {unexpected[0]!r}")
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise StyleIDError(f"{where}: weight {key!r} has shape {tuple(value.shape)}, expected {tuple(expected[key].shape)}")
    module.load_state_dict(state, strict=True)


def _read_weights(folder: Path) -> dict[str, torch.Tensor]:
    single = folder / "model.safetensors"
    index = folder / "model.safetensors.index.json"
    if single.exists():
        return load_file(str(single))
    if index.exists():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(load_file(str(folder / shard)))
        return state
    legacy = folder / "pytorch_model.bin"
    if legacy.exists():
        return torch.load(str(legacy), map_location="cpu", weights_only=True)
    raise StyleIDError(f"{folder}: no model.safetensors (or pytorch_model.bin) found")


def _read_image_processor(folder: Path, default_size: int) -> tuple[tuple[float, ...], tuple[float, ...], int]:
    path = folder / "preprocessor_config.json"
    if not path.exists():
        return OPENAI_MEAN, OPENAI_STD, default_size
    cfg = json.loads(path.read_text())
    crop = cfg.get("crop_size", default_size)
    size = crop.get("height", default_size) if isinstance(crop, dict) else int(crop)
    return tuple(cfg.get("image_mean", OPENAI_MEAN)), tuple(cfg.get("image_std", OPENAI_STD)), int(size)
