"""Supervised segmentation loss: soft Dice + (class-weighted) cross-entropy.

For logits ``(N, K, *)`` and integer targets ``(N, *)`` (``-1`` = unlabelled, ignored),
with p = softmax(logits) and y the one-hot target over the labelled pixels,

    dice_k = (2 sum p_k y_k + eps) / (sum p_k + sum y_k + eps)
    loss   = ce_weight * CE(logits, target; w) + dice_weight * (1 - mean_k dice_k)

the Dice being computed over the whole batch ("batch Dice", stable with few slices) and
averaged over the classes present in the target (Milletari et al., 2016). Class weights
``w`` (K,) balance the cross-entropy, e.g. :func:`balanced_class_weights`. Optional
per-pixel weights ``(N, *)`` (e.g. inverse sampling rates when the pixels are a
subsample) weight every sum, so a subsample estimates the loss of all pixels.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from napari_pix2rep.core.classes import IGNORE


def class_counts(target: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Labelled pixels of each class: ``(K,)`` float."""
    return torch.bincount(target[target != IGNORE].flatten(), minlength=n_classes).float()


def balanced_class_weights(target: torch.Tensor, n_classes: int, power: float = 0.5):
    """``(K,)`` weights proportional to ``frequency ** -power`` over labelled pixels, mean 1.

    Absent classes get weight 0; ``power`` 0 means no balancing.
    """
    return weights_from_counts(class_counts(target, n_classes), power)


def weights_from_counts(counts: torch.Tensor, power: float = 0.5) -> torch.Tensor:
    """:func:`balanced_class_weights` from class counts ``(K,)``."""
    w = torch.where(counts > 0, counts.clamp_min(1).pow(-power), torch.zeros_like(counts))
    return w * (counts > 0).sum() / w.sum().clamp_min(1e-12)


def dice_ce_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    class_weights: torch.Tensor | None = None,
    dice_weight: float = 1.0,
    ce_weight: float = 1.0,
    eps: float = 1.0,
    pixel_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Soft Dice + cross-entropy of ``logits (N, K, *)`` against ``target (N, *)`` -> scalar."""
    k = logits.shape[1]
    flat = logits.float().movedim(1, -1).reshape(-1, k)
    t = target.reshape(-1)
    pw = None if pixel_weights is None else pixel_weights.reshape(-1).float()
    keep = t != IGNORE
    if not bool(keep.all()):
        flat, t = flat[keep], t[keep]
        pw = None if pw is None else pw[keep]
    if t.numel() == 0:
        raise ValueError("No labelled pixels in the batch.")
    if pw is None:
        pw = torch.ones_like(t, dtype=flat.dtype)
    cw = pw if class_weights is None else pw * class_weights[t]
    logp = flat.log_softmax(dim=1)
    ce = -(logp.gather(1, t[:, None])[:, 0] * cw).sum() / cw.sum()
    w = pw[:, None]
    prob, onehot = logp.exp(), F.one_hot(t, k).to(flat.dtype)
    inter = (w * prob * onehot).sum(0)
    ysum = (w * onehot).sum(0)
    dice = (2 * inter + eps) / ((w * prob).sum(0) + ysum + eps)
    present = ysum > 0
    return ce_weight * ce + dice_weight * (1 - dice[present].mean())
