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
    assert got == pytest.approx(_hand_arcface(z, w, labels, m, s), rel=1e-4)


def _hand_arcface(z, w, labels, m, s):
    """ArcFace by hand: cos(θ + m) for the true class while θ ≤ π − m, cos θ − m·sin m beyond."""
    cos = _unit(z) @ _unit(w).T
    expected = 0.0
    for i, c in enumerate(labels):
        logits = s * cos[i].copy()
        theta = math.acos(cos[i, c])
        logits[c] = s * (math.cos(theta + m) if theta <= math.pi - m else cos[i, c] - m * math.sin(m))
        expected += -(logits[c] - np.log(np.exp(logits).sum()))
    return expected / len(labels)


def test_angular_margin_past_pi_minus_m_uses_the_fallback():
    # sample 0 sits at 170° from its class centre: beyond π − m = 151°, where cos(θ + m) wraps around
    angle = math.radians(170)
    z = np.array([[math.cos(angle), math.sin(angle)], [0.3, 1.0]])
    w = np.array([[1.0, 0.0], [0.0, 1.0]])
    labels = np.array([0, 1])
    loss_fn = AngularMarginLoss(2, 2, margin=0.5, scale=32.0)
    with torch.no_grad():
        loss_fn.weight.copy_(torch.tensor(w, dtype=torch.float32))
    got = float(loss_fn(torch.tensor(z, dtype=torch.float32), torch.tensor(labels)).detach())
    assert got == pytest.approx(_hand_arcface(z, w, labels, 0.5, 32.0), rel=1e-4)


def test_angular_target_logit_decreases_monotonically_with_the_angle():
    loss_fn = AngularMarginLoss(2, 2, margin=0.5)
    theta = torch.linspace(0.0, math.pi, 2001)
    target = loss_fn.target_logit(torch.cos(theta))
    assert (target.diff() <= 1e-6).all(), "the true-class logit must never rise as the angle grows"
    assert float(target[-1]) < -1.0  # beyond the plain cosine at θ = π: the margin still penalises


def test_collapse_with_antipodal_centres_is_no_optimum():
    """The degenerate solution that collapsed training: one embedding for every image, every class
    centre at its antipode. With a wrapping margin its loss (≈0.7 for 48 classes) beat chance; it
    must be worse than chance (ln C) so the optimiser is never drawn there."""
    classes, dim = 48, 32
    e = F.normalize(torch.randn(dim), dim=0)
    loss_fn = AngularMarginLoss(dim, classes)
    with torch.no_grad():
        loss_fn.weight.copy_(-e.expand(classes, dim) + 1e-3 * torch.randn(classes, dim))
    labels = torch.arange(classes)
    collapsed = float(loss_fn(e.expand(classes, dim), labels).detach())
    assert collapsed > math.log(classes), collapsed
    # while embeddings at their own centres score far better than chance
    with torch.no_grad():
        loss_fn.weight.copy_(torch.randn(classes, dim))
    separated = float(loss_fn(loss_fn.weight.detach(), labels).detach())
    assert separated < 0.5 * math.log(classes) < collapsed


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


def test_supcon_with_anchor_rows_splits_the_global_loss():
    """Multi-process L_scon: each process scores its own anchors against the gathered batch; the mean of
    the shares is the loss of the whole batch, and so are the gradients."""
    torch.manual_seed(0)
    z = torch.randn(8, 5, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    loss_fn = SupConLoss(0.1)
    full = loss_fn(z, labels)
    (g_full,) = torch.autograd.grad(full, z)
    halves = [loss_fn(z, labels, anchors=slice(0, 4)), loss_fn(z, labels, anchors=slice(4, 8))]
    assert float(sum(halves) / 2) == pytest.approx(float(full), rel=1e-6)
    (g_split,) = torch.autograd.grad(sum(halves) / 2, z)
    assert torch.allclose(g_split, g_full, atol=1e-6)
    assert float(loss_fn(z, labels, anchors=slice(0, 8))) == pytest.approx(float(full), rel=1e-7)


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
