"""Metric-learning losses: triplet (batch-hard or semi-hard) and Siamese contrastive.

Triplet loss (Larmuseau et al. 2020): ``max(0, |f(a) - f(p)| - |f(a) - f(n)| + alpha)``
with Euclidean distances. Contrastive loss (Hadsell et al. 2006, as used for the
Siamese networks of Sardeshmukh et al.): ``y d^2 + (1 - y) max(0, m - d)^2`` over
all pairs of a batch, ``y = 1`` for pairs of the same class.
"""

from __future__ import annotations

import torch

from ..choices import LOSSES, MINING  # the choice lists live in core/choices.py
from ..errors import MicrostructureError


def pairwise_distances(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Euclidean distance matrix ``(B, B)`` with a gradient-safe square root."""
    d2 = (x[:, None, :] - x[None, :, :]).pow(2).sum(-1)
    return torch.sqrt(d2.clamp_min(eps)) * (d2 > eps)


def triplet_loss(
    descriptors: torch.Tensor, labels: torch.Tensor, margin: float = 1.0, mining: str = "batch-hard"
) -> torch.Tensor:
    """Triplet loss over a labelled batch.

    Parameters
    ----------
    descriptors : (B, D) tensor
    labels : (B,) integer tensor
    margin : float
        alpha in the formula above.
    mining : {"batch-hard", "semi-hard", "all"}
        ``batch-hard``: for each anchor, its farthest positive and nearest
        negative (Hermans et al. 2017). ``semi-hard``: for each anchor-positive
        pair, the nearest negative farther than the positive (FaceNet); pairs
        without one use the hardest negative. ``all``: the mean over every
        valid triplet with a positive loss.
    """
    if mining not in MINING:
        raise MicrostructureError(f"unknown mining {mining!r}; choose one of {', '.join(MINING)}")
    d = pairwise_distances(descriptors)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    pos_mask = same & ~eye
    neg_mask = ~same
    if not bool(pos_mask.any()) or not bool(neg_mask.any()):
        raise MicrostructureError(
            "a triplet batch needs at least two classes and two examples of one class"
        )
    big = d.detach().max() + margin + 1.0
    if mining == "batch-hard":
        hardest_pos = torch.where(pos_mask, d, torch.zeros_like(d)).amax(1)
        hardest_neg = torch.where(neg_mask, d, big).amin(1)
        valid = pos_mask.any(1) & neg_mask.any(1)
        return torch.relu(hardest_pos - hardest_neg + margin)[valid].mean()
    # anchor-positive pairs (a, p) against negatives n: loss[a, p, n]
    ap = d[:, :, None]
    an = d[:, None, :]
    triplet_ok = pos_mask[:, :, None] & neg_mask[:, None, :]
    if mining == "all":
        losses = torch.relu(ap - an + margin)[triplet_ok]
        active = losses > 1e-12
        return losses[active].mean() if bool(active.any()) else losses.sum() * 0.0
    # semi-hard: nearest negative with d(a, n) > d(a, p)
    semi = triplet_ok & (an > ap)
    semi_neg = torch.where(semi, an.expand_as(semi), big).amin(2)
    hardest_neg = torch.where(neg_mask, d, big).amin(1)[:, None].expand_as(semi_neg)
    chosen = torch.where(semi.any(2), semi_neg, hardest_neg)
    losses = torch.relu(d - chosen + margin)[pos_mask & neg_mask.any(1)[:, None]]
    return losses.mean()


def contrastive_loss(descriptors: torch.Tensor, labels: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Siamese contrastive loss averaged over all distinct pairs of the batch."""
    d = pairwise_distances(descriptors)
    same = (labels[:, None] == labels[None, :]).float()
    upper = torch.triu(torch.ones_like(d, dtype=torch.bool), diagonal=1)
    per_pair = same * d.pow(2) + (1.0 - same) * torch.relu(margin - d).pow(2)
    return per_pair[upper].mean()

__all__ = ["LOSSES", "MINING", "contrastive_loss", "pairwise_distances", "triplet_loss"]
