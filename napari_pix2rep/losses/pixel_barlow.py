"""Pixel-level Barlow Twins loss, the Pix2Rep variant (Seince et al., MIDL 2024;
Zbontar et al., ICML 2021).

With aligned pixel vectors ``z1, z2`` of shape ``(n, D)``, each feature dimension is
standardised over the n pixels (mean 0, std 1), the cross-correlation is
``C = z1^T z2 / n`` (``D x D``) and

    loss = sum_i (1 - C_ii)^2 + lambda * sum_{i != j} C_ij^2

so aligned pixels agree (diagonal 1) while feature dimensions stay decorrelated.
Default lambda = 5e-3 (authors' follow-up code). Cost O(n D^2); no negatives needed.
"""

from __future__ import annotations

import torch


def _standardise(z: torch.Tensor, eps: float) -> torch.Tensor:
    return (z - z.mean(0)) / (z.std(0, unbiased=False) + eps)


def pixel_barlow(
    z1: torch.Tensor, z2: torch.Tensor, lambd: float = 5e-3, eps: float = 1e-5
) -> torch.Tensor:
    """Barlow Twins loss over aligned pixel vectors ``z1, z2``: ``(n, D)`` each -> scalar."""
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(
            f"Expected two (n, D) tensors of equal shape, got {z1.shape}, {z2.shape}."
        )
    if z1.shape[0] < 2:
        raise ValueError("Barlow Twins needs at least two aligned pixels.")
    c = _standardise(z1.float(), eps).T @ _standardise(z2.float(), eps) / z1.shape[0]
    diag = torch.diagonal(c)
    on = (1 - diag).pow(2).sum()
    off = c.pow(2).sum() - diag.pow(2).sum()
    return on + lambd * off
