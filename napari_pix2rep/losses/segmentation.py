"""Supervised segmentation loss: soft Dice + (class-weighted) cross-entropy.

For logits ``(N, K, *)`` and integer targets ``(N, *)`` (``-1`` = unlabelled, ignored),
with p = softmax(logits) and y the one-hot target over the labelled pixels,

    dice_k = (2 sum p_k y_k + eps) / (sum p_k + sum y_k + eps)
    loss   = ce_weight * CE(logits, target; w) + dice_weight * (1 - mean_k dice_k)

the Dice being computed over the whole batch ("batch Dice", stable with few slices) and
averaged over the classes present in the target (Milletari et al., 2016). Class weights
``w`` (K,) balance the cross-entropy, e.g. :func:`balanced_class_weights`.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

IGNORE = -1


def balanced_class_weights(target: torch.Tensor, n_classes: int, power: float = 0.5):
    """``(K,)`` weights proportional to ``frequency ** -power`` over labelled pixels, mean 1.

    Absent classes get weight 0.
    """
    t = target[target != IGNORE]
    counts = torch.bincount(t.flatten(), minlength=n_classes).float()
    w = torch.where(counts > 0, counts.clamp_min(1).pow(-power), torch.zeros_like(counts))
    return w * (counts > 0).sum() / w.sum().clamp_min(1e-12)


def dice_ce_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    class_weights: torch.Tensor | None = None,
    dice_weight: float = 1.0,
    ce_weight: float = 1.0,
    eps: float = 1.0,
) -> torch.Tensor:
    """Soft Dice + cross-entropy of ``logits (N, K, *)`` against ``target (N, *)`` -> scalar."""
    k = logits.shape[1]
    logits = logits.float()
    flat = logits.movedim(1, -1).reshape(-1, k)
    t = target.reshape(-1)
    keep = t != IGNORE
    flat, t = flat[keep], t[keep]
    if t.numel() == 0:
        raise ValueError("No labelled pixels in the batch.")
    ce = F.cross_entropy(flat, t, weight=class_weights)
    p = flat.softmax(dim=1)
    y = F.one_hot(t, k).float()
    inter = (p * y).sum(0)
    dice = (2 * inter + eps) / (p.sum(0) + y.sum(0) + eps)
    present = y.sum(0) > 0
    return ce_weight * ce + dice_weight * (1 - dice[present].mean())
