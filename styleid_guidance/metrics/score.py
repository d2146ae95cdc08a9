"""`StyleIDScore`: identity preservation as a torchmetrics `Metric`, and the functional `styleid_score`.

    from styleid_guidance.metrics import StyleIDScore

    metric = StyleIDScore("kwanY/styleid", reference=photo, normalize=True).to(device)  # one fixed reference
    for batch in loader:
        metric.update(generate(batch))             # or metric.update(preds, target) for paired images
    metric.compute()  # {"similarity": mean cosine, "verified": fraction ≥ threshold}

Conventions follow torchmetrics' FID: `normalize=True` means float images in [0, 1], `normalize=False` uint8 in
[0, 255]; a fixed reference is kept across `reset()` when `reset_reference=False` (FID's `reset_real_features`).
The states are sums (and, with `keep_samples=True`, every similarity), so `compute()` under DDP equals one process
seeing all the data. The encoder is frozen and stays in eval mode whatever `.train()` is called on the metric.
torchmetrics is an optional extra: `pip install styleid-guidance[metrics]`.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..errors import StyleIDError
from ..options import DEFAULT_CROP, DEFAULT_THRESHOLD, RELEASED_MODEL

try:
    from torchmetrics import Metric
except ImportError as err:  # the extra is optional; say how to get it instead of a bare ModuleNotFoundError
    raise ImportError("StyleIDScore needs torchmetrics: pip install 'styleid-guidance[metrics]' (or pip install torchmetrics)") from err

def _encoder(model: Any, device: torch.device | str | None = None) -> Any:
    from ..encoder.model import StyleIDEncoder

    enc = model if isinstance(model, torch.nn.Module) else StyleIDEncoder.from_pretrained(str(model), device=device)
    enc.eval()
    for p in enc.parameters():
        p.requires_grad_(False)  # a metric measures; gradients flow to the images, never into the encoder
    return enc


def _pixels(images: torch.Tensor, normalize: bool, what: str) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise StyleIDError(f"{what}: expected a [B, 3, H, W] image tensor, got {shape}")
    if normalize:
        if not images.is_floating_point():
            raise StyleIDError(f"{what}: normalize=True expects float images in [0, 1], got {images.dtype}")
        return images
    return images.float() / 255.0  # FID's normalize=False: uint8 in [0, 255]


def _embed(encoder: Any, images: torch.Tensor, crop: str, precision: str | None) -> torch.Tensor:
    return encoder.embed(images.to(encoder.device), crop=crop, precision=precision).float()


def _paired_similarity(encoder: Any, preds: torch.Tensor, target: torch.Tensor, normalize: bool, crop: str,
                       precision: str | None) -> torch.Tensor:
    """[B] cosine of each generated image to its target (B targets, or 1 for all); differentiable in `preds` only."""
    zp = _embed(encoder, _pixels(preds, normalize, "preds"), crop, precision)
    with torch.no_grad():
        zt = _embed(encoder, _pixels(target, normalize, "target"), crop, precision)
    if len(zt) not in (1, len(zp)):
        raise StyleIDError(f"target: {len(zt)} images for {len(zp)} preds; give as many, or one for all")
    return (zp * zt).sum(-1)


def styleid_score(preds: torch.Tensor, target: torch.Tensor, model: Any = RELEASED_MODEL, *, normalize: bool = True,
                  crop: str = DEFAULT_CROP, precision: str | None = "fp32", reduction: str = "mean") -> torch.Tensor:
    """Cosine similarity of each generated image to its target (a batch of the same size, or one image for all);
    differentiable in `preds`. reduction: "mean" | "none" (per image). `model`: an id/folder or a loaded encoder."""
    if reduction not in ("mean", "none"):
        raise StyleIDError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    sim = _paired_similarity(_encoder(model), preds, target, normalize, crop, precision)
    return sim.mean() if reduction == "mean" else sim


class StyleIDScore(Metric):
    """Mean StyleID cosine similarity of generated images to their references, and the verified rate at `threshold`.

    model: a StyleID id / folder / "test-tiny", or a loaded `StyleIDEncoder`. reference: images of the person
    ([K, 3, H, W]; their mean embedding is the fixed reference), also settable with `set_reference`.
    keep_samples: also keep every similarity (a list state, gathered across processes) for `compute()["samples"]`."""

    higher_is_better = True
    is_differentiable = True
    full_state_update = False
    plot_lower_bound = -1.0
    plot_upper_bound = 1.0

    def __init__(self, model: Any = RELEASED_MODEL, reference: torch.Tensor | None = None, *, threshold: float = DEFAULT_THRESHOLD,
                 normalize: bool = False, reset_reference: bool = True, crop: str = DEFAULT_CROP, precision: str | None = "fp32",
                 keep_samples: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        from ..score.run import check_threshold

        self.threshold = check_threshold(threshold)
        self.normalize, self.reset_reference, self.crop, self.precision = normalize, reset_reference, crop, precision
        self.keep_samples = keep_samples
        self.encoder = _encoder(model)
        self.add_state("similarity_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("similarity_sq_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("verified_sum", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        if keep_samples:
            self.add_state("samples", [], dist_reduce_fx="cat")
        self.reference_embedding: torch.Tensor | None = None
        if reference is not None:
            self.set_reference(reference)

    def train(self, mode: bool = True) -> StyleIDScore:
        super().train(mode)
        self.encoder.eval()  # dropout / LoRA dropout off: the score of an image must not depend on the loop's mode
        return self

    @torch.no_grad()
    def set_reference(self, images: torch.Tensor) -> None:
        """Fix the reference: the normalised mean embedding of `images` (one or several photos of the person)."""
        z = _embed(self.encoder, _pixels(images, self.normalize, "reference"), self.crop, self.precision)
        self.reference_embedding = torch.nn.functional.normalize(z.mean(0), dim=-1)

    def update(self, preds: torch.Tensor, target: torch.Tensor | None = None) -> None:
        """preds: generated images [B, 3, H, W]; target: their references (B images, or 1 for all), or None for the
        fixed reference."""
        if target is not None:
            sim = _paired_similarity(self.encoder, preds, target, self.normalize, self.crop, self.precision)
        elif self.reference_embedding is not None:
            zp = _embed(self.encoder, _pixels(preds, self.normalize, "preds"), self.crop, self.precision)
            sim = (zp * self.reference_embedding.to(zp.device)[None]).sum(-1)
        else:
            raise StyleIDError("no target and no fixed reference: pass target=, or reference= / set_reference() first")
        detached = sim.detach().double()
        self.similarity_sum += detached.sum()
        self.similarity_sq_sum += (detached ** 2).sum()
        self.verified_sum += (detached >= self.threshold).sum()
        self.total += len(sim)
        if self.keep_samples:
            self.samples.append(sim.detach().float())

    def compute(self) -> dict[str, torch.Tensor]:
        n = self.total.double()
        mean = self.similarity_sum / n
        var = (self.similarity_sq_sum - n * mean ** 2) / (n - 1) if self.total > 1 else torch.zeros((), dtype=torch.float64)
        out = {"similarity": mean.float(), "std": var.clamp_min(0).sqrt().float(), "verified": (self.verified_sum / n).float()}
        if self.keep_samples:
            samples = self.samples
            out["samples"] = torch.cat(samples) if isinstance(samples, list) and samples else samples if isinstance(samples, torch.Tensor) else torch.zeros(0)
        return out

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        # torchmetrics' forward resets the states around the batch; that internal reset must not drop the reference
        self._forwarding = True
        try:
            return super().forward(*args, **kwargs)
        finally:
            self._forwarding = False

    def reset(self) -> None:
        kept = self.reference_embedding
        super().reset()
        forwarding = getattr(self, "_forwarding", False)
        self.reference_embedding = kept if forwarding or not self.reset_reference else None

    def plot(self, val: Any = None, ax: Any = None) -> Any:
        """torchmetrics' plot of `compute()` (or `val`): the similarity and verified rate, or their history."""
        if val is None:
            val = {k: v for k, v in self.compute().items() if k != "samples"}
        elif isinstance(val, dict):
            val = {k: v for k, v in val.items() if k != "samples"}
        elif isinstance(val, Sequence):
            val = [{k: v for k, v in x.items() if k != "samples"} for x in val]
        return self._plot(val, ax)
