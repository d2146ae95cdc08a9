"""The guidance step both integrations take (the diffusers callback and the ComfyUI node): one place for the
step size, so `scale` means the same in both."""
from __future__ import annotations

import torch


def identity_descent(loss: torch.Tensor, z: torch.Tensor, scale: float,
                     normalize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(−scale · ∇_z loss, finite) per sample. With `normalize` the gradient is divided by its RMS per sample, so
    `scale` is the latent-space size of each correction whatever the decoder's and encoder's gradient scale.
    Samples whose loss or gradient is not finite get a zero step; `finite` [B] says which were kept."""
    (grad,) = torch.autograd.grad(loss.sum(), z)
    grad = grad.detach().float()
    dims = tuple(range(1, grad.ndim))
    finite_loss = torch.isfinite(loss.detach().float().reshape(len(grad), -1)).all(dim=1)
    finite = torch.isfinite(grad).all(dim=dims) & finite_loss
    grad = torch.where(finite.view(-1, *([1] * len(dims))), grad, torch.zeros_like(grad)).nan_to_num(0.0, 0.0, 0.0)
    if normalize:
        grad = grad / grad.pow(2).mean(dim=dims, keepdim=True).sqrt().clamp_min(1e-12)
    return -scale * grad, finite
