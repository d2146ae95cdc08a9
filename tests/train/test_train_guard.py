"""The training guard and the cross-process contrast set, without a training run."""
from __future__ import annotations

import math
import os

import pytest
import torch
import torch.multiprocessing as mp

from styleid_guidance.losses import SupConLoss
from styleid_guidance.metrics.verification import mean_pairwise_cosine
from styleid_guidance.train.runs.guard import TrainingGuard, TrainingStopped
from support import free_port


def test_mean_pairwise_cosine_is_one_when_collapsed_and_zero_for_orthogonal_rows():
    assert float(mean_pairwise_cosine(torch.ones(5, 3) * torch.tensor([1.0, 2.0, 3.0]))) == pytest.approx(1.0)
    assert float(mean_pairwise_cosine(torch.eye(4))) == pytest.approx(0.0, abs=1e-7)
    z = torch.randn(6, 8)
    zn = torch.nn.functional.normalize(z, dim=-1)
    expected = (zn @ zn.t()).masked_select(~torch.eye(6, dtype=torch.bool)).mean()
    assert float(mean_pairwise_cosine(z)) == pytest.approx(float(expected), rel=1e-5)
    with pytest.raises(ValueError):
        mean_pairwise_cosine(torch.ones(1, 3))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_loss_or_gradient_stops(bad):
    guard = TrainingGuard()
    guard.check_step(3, {"loss": 1.0, "ang": 0.5}, 2.0, "hint")
    with pytest.raises(TrainingStopped, match=r"step 4: the loss went non-finite \(ang="):
        guard.check_step(4, {"loss": 1.0, "ang": bad}, 2.0, "try this")
    with pytest.raises(TrainingStopped, match="gradient norm"):
        guard.check_step(5, {"loss": 1.0}, bad, "try this")


def test_collapse_needs_patience_consecutive_intervals():
    guard = TrainingGuard(threshold=0.999, patience=3)
    for spread in (0.9995, 0.9999):
        guard.check_spread(10, spread, 0.8, "hint")
        assert guard.suspect
    guard.check_spread(30, 0.95, 0.8, "hint")  # a healthy interval resets the count
    assert not guard.suspect
    guard.check_spread(40, 0.9991, 0.8, "hint")
    guard.check_spread(50, 0.9992, 0.8, "hint")
    with pytest.raises(TrainingStopped, match=r"step 60: the embeddings collapsed .*0\.99990 ≥ 0\.999 for 3 log intervals; frozen branch 0\.800.*lower"):
        guard.check_spread(60, 0.9999, 0.8, "try a lower --lr")
    with pytest.raises(TrainingStopped, match="non-finite"):
        TrainingGuard().check_spread(1, math.nan, 0.8, "hint")


def _gather_worker(rank: int, port: int, z_all: torch.Tensor, labels_all: torch.Tensor, out: dict) -> None:
    import torch.distributed as dist

    from styleid_guidance.train.runs.distributed import gather_for_contrast

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        n = len(z_all) // 2
        z = z_all[rank * n : (rank + 1) * n].clone().requires_grad_(True)
        contrast = gather_for_contrast(z, labels_all[rank * n : (rank + 1) * n])
        loss = SupConLoss(0.1)(*contrast)
        loss.backward()
        out[rank] = (float(loss.detach()), z.grad.clone(), contrast[2])
    finally:
        dist.destroy_process_group()


def test_gathered_contrast_matches_one_big_batch():
    """Two gloo processes, 4 rows each: each one's loss is its anchors' share of the 8-row SupCon, and
    the gradient each gets for its rows is that of the sum of both shares (DDP then averages)."""
    torch.manual_seed(0)
    z_all = torch.randn(8, 6)
    labels_all = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    out = mp.Manager().dict()
    mp.spawn(_gather_worker, args=(free_port(), z_all, labels_all, out), nprocs=2, join=True)
    z = z_all.clone().requires_grad_(True)
    loss_fn = SupConLoss(0.1)
    shares = [loss_fn(z, labels_all, anchors=slice(0, 4)), loss_fn(z, labels_all, anchors=slice(4, 8))]
    (grad,) = torch.autograd.grad(sum(shares), z)
    for rank in (0, 1):
        loss, g, anchors = out[rank]
        assert anchors == slice(4 * rank, 4 * rank + 4)
        assert loss == pytest.approx(float(shares[rank]), rel=1e-6)
        assert torch.allclose(g, grad[4 * rank : 4 * rank + 4], atol=1e-6)
    assert (sum(out[r][0] for r in (0, 1)) / 2) == pytest.approx(float(loss_fn(z_all, labels_all)), rel=1e-6)
