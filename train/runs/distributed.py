"""The two collectives the trainer needs beyond what accelerate wraps."""
from __future__ import annotations

import torch
import torch.distributed as dist


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums every process's gradient for this process's rows.

    Each process's loss depends on all rows, so the gradient of the *global* loss w.r.t. the local
    rows is the sum over processes; DDP then averages parameter gradients as usual. (Built on
    all_gather + all_reduce, which every backend has; gloo lacks reduce_scatter.)"""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.rows = dist.get_rank(), x.shape[0]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        start = ctx.rank * ctx.rows
        return grad[start : start + ctx.rows]


def gather_for_contrast(z: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, slice]:
    """(embeddings of every process, their labels, this process's rows) — gradients flow back to z.

    Every process must pass batches of the same size (the P×K sampler guarantees it)."""
    world = _world()
    if world == 1:
        return z, labels, slice(0, z.shape[0])
    parts = [torch.empty_like(labels) for _ in range(world)]
    dist.all_gather(parts, labels.contiguous())
    start = dist.get_rank() * z.shape[0]
    return _GatherWithGrad.apply(z), torch.cat(parts), slice(start, start + z.shape[0])


def any_process(flag: bool, device: torch.device) -> bool:
    """True on every process if `flag` is true on any (so all of them take the same branch)."""
    if _world() == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t)
    return bool(t.item() > 0)
