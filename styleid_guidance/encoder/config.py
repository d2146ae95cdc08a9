"""What a StyleID encoder is made of, as configuration dataclasses (peft style: help metadata, checked
in `__post_init__`).

`LoraSettings` is the one source of the LoRA defaults: the encoder, the trainer and the CLI all read
them from here. A saved encoder keeps its LoRA settings in peft's own `adapter_config.json` only;
`styleid_config.json` describes the backbone.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import StyleIDError

# open_clip.constants.OPENAI_DATASET_MEAN / _STD (tests/encoder/test_encoder.py checks they stay equal): named here, not
# imported, because importing open_clip takes seconds and this module is read by `styleid train --help`
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
LORA_TARGETS = ("attn", "mlp", "attn+mlp")
LORA_RENAMED = {"rank": "lora_rank", "alpha": "lora_alpha", "dropout": "lora_dropout", "targets": "lora_targets"}


@dataclass
class LoraSettings:
    """LoRA on the vision tower. The paper states the rank (8), not alpha; alpha = rank (peft's scaling 1.0)
    is this project's default, measured in train/README.md against the public settings' alpha/r = 0.125."""

    # the project's one spelling (from_open_clip's arguments, TrainConfig, --lora-rank ...); peft's `r` and
    # `target_modules` appear only where peft is called and in its adapter_config.json
    lora_rank: int = field(default=8, metadata={"help": "LoRA rank r; 0 = no adapter (the plain backbone)"})
    lora_alpha: float = field(default=8.0, metadata={"help": "LoRA alpha; the update is scaled by alpha / rank"})
    lora_dropout: float = field(default=0.0, metadata={"help": "dropout on the LoRA input"})
    lora_targets: str | list[str] = field(default="attn+mlp", metadata={
        "help": "attn (q, k, v, out), mlp (both linear layers), attn+mlp, or a list of module names"})

    def __post_init__(self) -> None:
        if not isinstance(self.lora_rank, int) or isinstance(self.lora_rank, bool) or self.lora_rank < 0:
            raise StyleIDError(f"lora_rank must be a whole number ≥ 0, got {self.lora_rank!r}")
        if not (isinstance(self.lora_alpha, (int, float)) and math.isfinite(self.lora_alpha) and self.lora_alpha > 0):
            raise StyleIDError(f"lora_alpha must be a finite number > 0, got {self.lora_alpha!r}")
        if not (isinstance(self.lora_dropout, (int, float)) and 0.0 <= self.lora_dropout < 1.0):
            raise StyleIDError(f"lora_dropout must be in [0, 1), got {self.lora_dropout!r}")
        targets = self.lora_targets
        if isinstance(targets, str):
            if targets not in LORA_TARGETS:
                raise StyleIDError(f"lora_targets must be one of {', '.join(LORA_TARGETS)} or a list of module names, got {targets!r}")
        elif not (isinstance(targets, (list, tuple)) and targets and all(isinstance(t, str) for t in targets)):
            raise StyleIDError(f"lora_targets must be one of {', '.join(LORA_TARGETS)} or a list of module names, got {targets!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LoraSettings":
        """Settings from a mapping; the names of folders written before the one spelling (rank, alpha, ...) still read."""
        return cls(**{LORA_RENAMED.get(k, k): v for k, v in d.items()})


@dataclass
class StyleIDConfig:
    """Everything needed to rebuild the backbone without the original download."""

    backbone: dict[str, Any] = field(metadata={
        "help": '{"open_clip_model": name, "quick_gelu": bool} or {"vit": VisionTransformer keyword arguments}'})
    image_size: int = field(metadata={"help": "input side in pixels"})
    embedding_dim: int = field(metadata={"help": "size of the L2-normalised embedding"})
    image_mean: tuple[float, ...] = field(default=OPENAI_MEAN, metadata={"help": "normalisation mean (RGB)"})
    image_std: tuple[float, ...] = field(default=OPENAI_STD, metadata={"help": "normalisation std (RGB)"})
    lora: LoraSettings = field(default_factory=LoraSettings, metadata={
        "help": "the adapter; saved in peft's adapter_config.json, not in styleid_config.json"})
    source: str = field(default="", metadata={"help": 'provenance: "open_clip:ViT-L-14/openai", "transformers:kwanY/styleid", ...'})

    def __post_init__(self) -> None:
        if not isinstance(self.backbone, dict) or not ({"open_clip_model", "vit"} & set(self.backbone)):
            raise StyleIDError(f"backbone must name an open_clip model or give ViT settings, got {self.backbone!r}")
        for name in ("image_size", "embedding_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise StyleIDError(f"{name} must be a whole number ≥ 1, got {value!r}")
        self.image_mean, self.image_std = tuple(self.image_mean), tuple(self.image_std)
        if len(self.image_mean) != 3 or len(self.image_std) != 3 or not all(s > 0 for s in self.image_std):
            raise StyleIDError(f"image_mean and image_std need 3 values (std > 0), got {self.image_mean}, {self.image_std}")
        if isinstance(self.lora, dict):
            self.lora = LoraSettings.from_dict(self.lora)

    def to_dict(self) -> dict[str, Any]:
        """The saved form: the backbone only (LoRA lives in adapter_config.json)."""
        d = dataclasses.asdict(self)
        d.pop("lora")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: object = "styleid_config.json") -> "StyleIDConfig":
        if not isinstance(d, dict):
            raise StyleIDError(f"{where}: expected a JSON object, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(f.name for f in dataclasses.fields(cls)
                         if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in d)
        if missing:
            raise StyleIDError(f"{where}: missing field(s) {', '.join(missing)}; was it written by save_pretrained?")
        unknown = sorted(set(d) - known)
        if unknown:
            raise StyleIDError(f"{where}: unknown field(s) {', '.join(unknown)}")
        values = dict(d)
        lora = values.pop("lora", None)  # folders written before LoRA moved to adapter_config.json
        try:
            config = cls(**values)
            if isinstance(lora, dict):
                config.lora = LoraSettings.from_dict(lora)
        except TypeError as err:
            raise StyleIDError(f"{where}: {err}") from None
        except StyleIDError as err:
            raise StyleIDError(f"{where}: {err}") from None
        return config
