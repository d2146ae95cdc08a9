"""The paper's training objective: L = L_ang + λ_scon·L_scon + λ_reg·L_reg (StyleID, Yun et al., SIGGRAPH 2026)."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class AngularMarginLoss(nn.Module):
    """Additive angular margin softmax (ArcFace): the true class logit is α·cos(θ + m).

    cos(θ + m) is expanded as cosθ·cos m − sinθ·sin m so the gradient stays finite near θ = 0
    (acos is not differentiable at ±1).

    For θ > π − m, cos(θ + m) wraps around and *rises* again with θ. Left alone, that makes a
    degenerate optimum: every embedding collapses to one point and every class centre moves to its
    antipode, where the margin term is larger than the plain cosines of the other classes and the
    loss falls to log(1 + (C−1)·e^{−α(1−cos m)}) ≈ 0.7 for 48 classes — below any honest solution.
    Beyond θ = π − m the target logit therefore continues as cosθ − m·sin m (ArcFace's own
    fallback, as in insightface), so it keeps decreasing as θ grows.
    """

    def __init__(self, embedding_dim: int, num_classes: int, margin: float = 0.5, scale: float = 32.0):
        super().__init__()
        self.margin = margin
        self.scale = scale
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.xavier_uniform_(self.weight)

    def target_logit(self, cos: torch.Tensor) -> torch.Tensor:
        """cos(θ + m) for θ ≤ π − m, cosθ − m·sin m beyond: monotonically decreasing in θ on [0, π]."""
        m = self.margin
        sin = (1.0 - cos.pow(2)).clamp_min(1e-12).sqrt()
        with_margin = cos * math.cos(m) - sin * math.sin(m)
        return torch.where(cos > math.cos(math.pi - m), with_margin, cos - m * math.sin(m))

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = F.normalize(embeddings.float(), dim=-1) @ F.normalize(self.weight.float(), dim=-1).t()
        cos = cos.clamp(-1.0, 1.0)
        true_cos = cos.gather(1, labels.view(-1, 1))
        return self.scale * cos.scatter(1, labels.view(-1, 1), self.target_logit(true_cos))

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.logits(embeddings, labels), labels)


class SupConLoss(nn.Module):
    """Supervised contrastive loss (Khosla et al., L_out): positives are the other samples of the same
    identity, the denominator runs over every a ≠ i; averaged over anchors that have a positive.

    `anchors` selects the rows that act as anchors (default: all). Multi-process training passes the
    embeddings gathered from every process as the contrast set and its own rows as anchors, so each
    process's loss is its share of the loss over the global batch.
    """

    def __init__(self, temperature: float = 0.1):
        super().__init__()
        self.temperature = temperature

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor, anchors: slice | None = None) -> torch.Tensor:
        z = F.normalize(embeddings.float(), dim=-1)
        n = z.shape[0]
        rows = torch.arange(n, device=z.device)[anchors if anchors is not None else slice(None)]
        sim = z[rows] @ z.t() / self.temperature
        self_mask = rows.view(-1, 1) == torch.arange(n, device=z.device).view(1, -1)
        sim = sim.masked_fill(self_mask, float("-inf"))
        log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
        positives = (labels[rows].view(-1, 1) == labels.view(1, -1)) & ~self_mask
        n_pos = positives.sum(1)
        has_pos = n_pos > 0
        if not has_pos.any():
            raise ValueError("SupConLoss needs at least one identity with two samples in the batch")
        pos_log_prob = log_prob.masked_fill(~positives, 0.0).sum(1)
        return -(pos_log_prob[has_pos] / n_pos[has_pos]).mean()


def embedding_regularization(z: torch.Tensor, z0: torch.Tensor) -> torch.Tensor:
    """L_reg: mean over the batch of ‖ẑ − ẑ⁽⁰⁾‖², both L2-normalised; z0 is the frozen branch."""
    return (F.normalize(z.float(), dim=-1) - F.normalize(z0.float(), dim=-1)).pow(2).sum(-1).mean()


class StyleIDObjective(nn.Module):
    """L_ang + λ_scon·L_scon + λ_reg·L_reg. Holds the angular head (trained, dropped at inference)."""

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        margin: float = 0.5,
        scale: float = 32.0,
        temperature: float = 0.1,
        lambda_scon: float = 0.6,
        lambda_reg: float = 0.1,
    ):
        super().__init__()
        self.angular = AngularMarginLoss(embedding_dim, num_classes, margin, scale)
        self.supcon = SupConLoss(temperature)
        self.lambda_scon = lambda_scon
        self.lambda_reg = lambda_reg

    def forward(self, z: torch.Tensor, labels: torch.Tensor, z0: torch.Tensor | None = None,
                contrast: tuple[torch.Tensor, torch.Tensor, slice] | None = None) -> dict[str, torch.Tensor]:
        """`contrast` = (embeddings, labels, anchor rows) of a larger batch for L_scon (e.g. gathered
        from every process, with this batch's rows as anchors); default: this batch alone."""
        ang = self.angular(z, labels)
        if not self.lambda_scon:
            scon = z.new_zeros(())
        elif contrast is not None:
            scon = self.supcon(*contrast)
        else:
            scon = self.supcon(z, labels)
        reg = embedding_regularization(z, z0) if (z0 is not None and self.lambda_reg) else z.new_zeros(())
        loss = ang + self.lambda_scon * scon + self.lambda_reg * reg
        return {"loss": loss, "ang": ang.detach(), "scon": scon.detach(), "reg": reg.detach()}
