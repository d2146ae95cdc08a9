"""`StyleIDScore`: identity preservation as a torchmetrics `Metric`, and the functional `styleid_score`.

    from styleid_guidance.metrics import StyleIDScore

    metric = StyleIDScore("kwanY/styleid", reference=photo, normalize=True).to(device)  # one fixed reference
    for batch in loader:
        metric.update(generate(batch))             # or metric.update(preds, target) for paired images
        # clips [B, F, 3, H, W] too: per-frame scores, then one mean per clip (files.video.frames_to_tensor)
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


def _pixels(images: torch.Tensor, normalize: bool, what: str, clips: bool = False) -> torch.Tensor:
    """Images [B, 3, H, W] (or, with `clips`, also videos [B, F, 3, H, W]) in the `normalize` convention → float."""
    ok = isinstance(images, torch.Tensor) and ((images.ndim == 4 and images.shape[1] == 3)
                                               or (clips and images.ndim == 5 and images.shape[2] == 3 and images.shape[1] > 0))
    if not ok:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        want = "a [B, 3, H, W] image tensor or a [B, F, 3, H, W] clip tensor" if clips else "a [B, 3, H, W] image tensor"
        raise StyleIDError(f"{what}: expected {want}, got {shape}")
    if normalize:
        if not images.is_floating_point():
            raise StyleIDError(f"{what}: normalize=True expects float images in [0, 1], got {images.dtype}")
        return images
    return images.float() / 255.0  # FID's normalize=False: uint8 in [0, 255]


def _embed(encoder: Any, images: torch.Tensor, crop: str, precision: str | None) -> torch.Tensor:
    return encoder.embed(images.to(encoder.device), crop=crop, precision=precision).float()


def _frame_similarity(encoder: Any, preds: torch.Tensor, reference: torch.Tensor, normalize: bool, crop: str,
                      precision: str | None) -> torch.Tensor:
    """Cosine of each image [B] (or each clip's frames [B, F]) to its reference embedding ([B, D] or [1, D])."""
    x = _pixels(preds, normalize, "preds", clips=True)
    frames = x.flatten(0, 1) if x.ndim == 5 else x  # a clip's frames are embedded like images, in one batch
    z = _embed(encoder, frames, crop, precision)
    reference = reference.to(z.device)
    if len(reference) not in (1, len(x)):
        raise StyleIDError(f"target: {len(reference)} images for {len(x)} preds; give as many, or one for all")
    if x.ndim == 5:
        return (z.view(x.shape[0], x.shape[1], -1) * reference[:, None]).sum(-1)
    return (z * reference).sum(-1)


def _paired_similarity(encoder: Any, preds: torch.Tensor, target: torch.Tensor, normalize: bool, crop: str,
                       precision: str | None) -> torch.Tensor:
    """[B] cosine of each generated image to its target (B targets, or 1 for all), or [B, F] per clip frame;
    differentiable in `preds` only."""
    with torch.no_grad():
        zt = _embed(encoder, _pixels(target, normalize, "target"), crop, precision)
    return _frame_similarity(encoder, preds, zt, normalize, crop, precision)


def styleid_score(preds: torch.Tensor, target: torch.Tensor, model: Any = RELEASED_MODEL, *, normalize: bool = True,
                  crop: str = DEFAULT_CROP, precision: str | None = "fp32", reduction: str = "mean") -> torch.Tensor:
    """Cosine similarity of each generated image to its target (a batch of the same size, or one image for all);
    differentiable in `preds`. preds may be clips [B, F, 3, H, W]: each clip scores the mean over its frames.
    reduction: "mean" (over images / clips) | "none" (per image / clip) | "frames" (clips only: [B, F]).
    `model`: an id/folder or a loaded encoder. `StyleIDScore` gives the same numbers, batch by batch."""
    if reduction not in ("mean", "none", "frames"):
        raise StyleIDError(f"reduction must be 'mean', 'none' or 'frames', got {reduction!r}")
    sim = _paired_similarity(_encoder(model), preds, target, normalize, crop, precision)
    if reduction == "frames":
        if sim.ndim != 2:
            raise StyleIDError("reduction='frames' needs clips [B, F, 3, H, W]")
        return sim
    per_item = sim.mean(-1) if sim.ndim == 2 else sim  # a clip: the mean of its frames, as the video benchmarks
    return per_item.mean() if reduction == "mean" else per_item


class StyleIDScore(Metric):
    """Mean StyleID cosine similarity of generated images to their references, and the verified rate at `threshold`.

    model: a StyleID id / folder / "test-tiny", or a loaded `StyleIDEncoder`. reference: images of the person
    ([K, 3, H, W]; their mean embedding is the fixed reference), also settable with `set_reference`. preds may be
    clips [B, F, 3, H, W]: per-frame scores, then per-clip means, every clip weighing the same.
    is_differentiable: the value `forward` returns carries gradients to `preds` (equal to `styleid_score`'s);
    the accumulated `compute()` does not, since torchmetrics merges the states across batches without grad.
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
        """preds: generated images [B, 3, H, W] or clips [B, F, 3, H, W] (a clip counts once, with the mean of its
        frames); target: their references (B images, or 1 for all), or None for the fixed reference.
        The states keep the graph to `preds` (is_differentiable): `forward` and `compute` give gradients."""
        if target is not None:
            sim = _paired_similarity(self.encoder, preds, target, self.normalize, self.crop, self.precision)
        elif self.reference_embedding is not None:
            sim = _frame_similarity(self.encoder, preds, self.reference_embedding[None], self.normalize, self.crop,
                                    self.precision)
        else:
            raise StyleIDError("no target and no fixed reference: pass target=, or reference= / set_reference() first")
        if sim.ndim == 2:  # clips: per-frame scores, then per-clip means
            sim = sim.mean(-1)
        sim64 = sim.double()
        self.similarity_sum = self.similarity_sum + sim64.sum()
        self.similarity_sq_sum = self.similarity_sq_sum + (sim64 ** 2).sum()
        self.verified_sum += (sim.detach() >= self.threshold).sum()
        self.total += len(sim)
        if self.keep_samples:
            self.samples.append(sim.float())

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
