"""The paper's training losses against values computed by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from styleid_guidance.losses import AngularMarginLoss, StyleIDObjective, SupConLoss, embedding_regularization


def _unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_angular_margin_matches_hand_computation():
    z = np.array([[1.0, 0.2], [0.1, -1.0], [-0.7, 0.7]])
    w = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 1.0]])
    labels = np.array([0, 2, 2])
    m, s = 0.5, 32.0
    loss_fn = AngularMarginLoss(2, 3, margin=m, scale=s)
    with torch.no_grad():
        loss_fn.weight.copy_(torch.tensor(w, dtype=torch.float32))
    got = float(loss_fn(torch.tensor(z, dtype=torch.float32), torch.tensor(labels)))
    cos = _unit(z) @ _unit(w).T
    expected = 0.0
    for i, c in enumerate(labels):
        logits = s * cos[i].copy()
        logits[c] = s * math.cos(math.acos(cos[i, c]) + m)
        expected += -(logits[c] - np.log(np.exp(logits).sum()))
    assert got == pytest.approx(expected / len(labels), rel=1e-4)


def test_angular_margin_penalises_the_true_class():
    loss_fn = AngularMarginLoss(8, 5)
    z, y = torch.randn(6, 8), torch.randint(0, 5, (6,))
    no_margin = AngularMarginLoss(8, 5, margin=0.0)
    no_margin.weight = loss_fn.weight
    assert loss_fn(z, y) > no_margin(z, y)
    assert loss_fn.weight.shape == (5, 8)


def test_supcon_matches_explicit_loops():
    torch.manual_seed(0)
    z = torch.randn(6, 4)
    labels = torch.tensor([0, 0, 1, 1, 1, 2])  # identity 2 has no positive: not an anchor
    tau = 0.1
    got = float(SupConLoss(temperature=tau)(z, labels))
    zn = F.normalize(z, dim=-1).double().numpy()
    total, anchors = 0.0, 0
    for i in range(6):
        pos = [p for p in range(6) if p != i and labels[p] == labels[i]]
        if not pos:
            continue
        denom = sum(math.exp(zn[i] @ zn[a] / tau) for a in range(6) if a != i)
        total += -sum(math.log(math.exp(zn[i] @ zn[p] / tau) / denom) for p in pos) / len(pos)
        anchors += 1
    assert got == pytest.approx(total / anchors, rel=1e-4)


def test_supcon_needs_a_positive():
    with pytest.raises(ValueError, match="two samples"):
        SupConLoss()(torch.randn(3, 4), torch.tensor([0, 1, 2]))


def test_embedding_regularization_is_mean_squared_distance_of_unit_vectors():
    z = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    z0 = torch.tensor([[1.0, 0.0], [0.0, -5.0]])
    # unit: (0.6,0.8) vs (1,0) → 0.16+0.64 = 0.8;  (0,1) vs (0,-1) → 4
    assert float(embedding_regularization(z, z0)) == pytest.approx((0.8 + 4.0) / 2)
    assert float(embedding_regularization(z, 7 * z)) == pytest.approx(0.0, abs=1e-7)


def test_objective_combines_terms_with_paper_weights():
    torch.manual_seed(0)
    obj = StyleIDObjective(embedding_dim=8, num_classes=4)
    assert (obj.lambda_scon, obj.lambda_reg, obj.angular.margin, obj.angular.scale, obj.supcon.temperature) == (0.6, 0.1, 0.5, 32.0, 0.1)
    z, z0 = torch.randn(8, 8, requires_grad=True), torch.randn(8, 8)
    y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    out = obj(z, y, z0)
    expected = obj.angular(z, y) + 0.6 * obj.supcon(z, y) + 0.1 * embedding_regularization(z, z0)
    assert float(out["loss"]) == pytest.approx(float(expected), rel=1e-6)
    assert set(out) == {"loss", "ang", "scon", "reg"}
    out["loss"].backward()
    assert z.grad.abs().sum() > 0 and obj.angular.weight.grad.abs().sum() > 0
