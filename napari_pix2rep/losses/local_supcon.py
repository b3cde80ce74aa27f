"""Supervised local contrastive loss (Hu et al., MICCAI 2021, arXiv 2109.07407).

Pixel features f ``(B, D, H, W)`` (L2-normalised here) and labels y ``(B, H, W)``
(``-1`` = unlabelled). For an anchor pixel u with a foreground label, the positives P(u)
are the other labelled pixels with the same label and A(u) all other labelled pixels:

    loss(u) = -1/|P(u)| sum_{p in P(u)} log( exp(f_u.f_p/tau) / sum_{a in A(u)} exp(f_u.f_a/tau) )

averaged over anchors (background pixels are negatives but never anchors; tau = 0.1 in
the authors' code). The naive loss is O((HW)^2) per image, so, as the paper does, the
feature map is first **downsampled** (every ``stride``-th pixel) and the loss is computed
inside non-overlapping ``block x block`` windows, skipping windows without foreground:
memory and time grow linearly with the number of pixels.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from napari_pix2rep.losses.segmentation import IGNORE


def _blocks(x: torch.Tensor, block: int) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B * nb, block * block, C)`` (H, W padded up to the block size)."""
    b, c, h, w = x.shape
    ph, pw = (-h) % block, (-w) % block
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), value=IGNORE if c == 1 and not x.is_floating_point() else 0)
    x = x.unfold(2, block, block).unfold(3, block, block)  # B, C, nh, nw, block, block
    return x.permute(0, 2, 3, 4, 5, 1).reshape(-1, block * block, c)


def local_supcon_loss(
    features: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 0.1,
    stride: int = 4,
    block: int = 16,
) -> torch.Tensor:
    """Block-wise supervised contrastive loss: ``(B, D, H, W)``, ``(B, H, W)`` -> scalar.

    ``stride`` and ``block`` are in feature-map pixels (the block is taken after the
    downsampling). Returns 0 (with a graph) when no anchor has a positive.
    """
    f = F.normalize(features[:, :, ::stride, ::stride].float(), dim=1)
    y = labels[:, ::stride, ::stride].long()
    fb = _blocks(f, block)  # (nb, P, D)
    yb = _blocks(y[:, None], block)[..., 0]  # (nb, P)
    has_fg = (yb > 0).any(dim=1)
    fb, yb = fb[has_fg], yb[has_fg]
    if fb.shape[0] == 0:
        return features.sum() * 0.0
    valid = yb != IGNORE
    sim = fb @ fb.transpose(1, 2) / temperature  # (nb, P, P)
    eye = torch.eye(sim.shape[-1], dtype=torch.bool, device=sim.device)
    others = valid[:, None, :] & ~eye  # A(u)
    sim = sim.masked_fill(~others, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=-1, keepdim=True)
    pos = others & (yb[:, :, None] == yb[:, None, :])
    n_pos = pos.sum(-1)
    anchors = (yb > 0) & (n_pos > 0)
    if not anchors.any():
        return features.sum() * 0.0
    mean_log = torch.where(pos, log_prob, torch.zeros_like(log_prob)).sum(-1) / n_pos.clamp_min(1)
    return -mean_log[anchors].mean()
