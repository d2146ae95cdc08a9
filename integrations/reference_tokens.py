"""Conditioning tokens that ride along with the noisy latents in the denoiser input (FLUX.1 Kontext).

`FluxKontextPipeline` calls its transformer with `hidden_states = cat([latents, image_latents], dim=1)`: the
generated (noisy) tokens first, then the packed reference image's tokens, which are fixed for the whole run
(their `img_ids` rows start with 1), and keeps only the first `latents.shape[1]` output tokens. The x_t mode
re-runs the transformer with gradients on the step's input, so it must split that input the same way: guidance
moves the generated tokens only and passes the image tokens through as the very same tensor (never edited,
never part of the graph), and only the generated part of the output is a velocity for the latents.

For a pipeline without such tokens (SD, SDXL, FLUX, InfiniteYou) the split is the identity.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from styleid_guidance.errors import StyleIDError


@dataclass(frozen=True)
class TokenSplit:
    """Where the generated tokens end in a packed denoiser input; `reference` is the rest (None if none)."""

    generated: int
    reference: torch.Tensor | None

    def join(self, generated: torch.Tensor) -> torch.Tensor:
        """The denoiser input for edited generated tokens: the reference tokens follow them unchanged."""
        if self.reference is None:
            return generated
        ref = self.reference
        if ref.shape[0] != generated.shape[0]:  # the input was repeated for batched CFG
            ref = ref.repeat(generated.shape[0] // ref.shape[0], *([1] * (ref.ndim - 1)))
        return torch.cat([generated, ref.to(generated.dtype)], dim=1)

    def output(self, out: torch.Tensor) -> torch.Tensor:
        """The denoiser output's generated part (what the pipeline itself keeps as noise_pred)."""
        return out if self.reference is None else out[:, : self.generated]


def split_reference_tokens(model_in: torch.Tensor, latents: torch.Tensor) -> tuple[torch.Tensor, TokenSplit]:
    """Split the recorded denoiser input into the generated tokens (shaped like `latents`) and the conditioning
    tokens appended after them. 4-D (UNet) inputs and FLUX inputs without extra tokens pass through whole."""
    if latents.ndim != 3 or model_in.ndim != 3:
        return model_in, TokenSplit(model_in.shape[1] if model_in.ndim == 3 else 0, None)
    n = latents.shape[1]
    if model_in.shape[1] < n or model_in.shape[2] != latents.shape[2]:
        raise StyleIDError(f"x_t guidance: the denoiser input has {model_in.shape[1]} tokens of width {model_in.shape[2]}, "
                           f"fewer than the {n} latent tokens of width {latents.shape[2]}: not a FLUX / FLUX.1 Kontext call")
    if model_in.shape[1] == n:
        return model_in, TokenSplit(n, None)
    # detached: the reference tokens are an input of the step, not something guidance may move
    return model_in[:, :n], TokenSplit(n, model_in[:, n:].detach())


def check_single_denoiser_call(calls: int) -> None:
    """The x_t mode re-runs the one recorded denoiser call of a step; with true CFG there are two (the positive
    and the negative prompt) and the record holds only the negative one, so re-running it would guide the wrong
    prediction. x0 mode reads the pipeline's combined noise_pred and is exact there."""
    if calls > 1:
        raise StyleIDError(f"x_t guidance saw {calls} denoiser calls in one step (true CFG: true_cfg_scale > 1 with a "
                           "negative prompt); use mode='x0', or true_cfg_scale=1")
