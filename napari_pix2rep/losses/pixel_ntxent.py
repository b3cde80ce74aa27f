"""Pixel-level NT-Xent (InfoNCE) loss of Pix2Rep (Seince et al., MIDL 2024).

Given N aligned pixel pairs (the same anatomical point seen in two augmented views),
``z1, z2`` of shape ``(N, D)``, all 2N vectors are L2-normalised, ``s_ij = z_i . z_j / tau``
and, with ``pos(i)`` the other view of pixel i,

    loss = 1/(2N) * sum_i  -log( exp(s_{i,pos(i)}) / sum_{k != i} exp(s_ik) )

i.e. SimCLR's NT-Xent (Chen et al., 2020) over pixels: every other sampled pixel, of the
same or another slice and of either view, is a negative. Default tau = 0.53 (authors' code).

The formula does not care what a vector stands for: the image-level SimCLR baseline
(:class:`napari_pix2rep.pretrain.objectives.SimCLRObjective`, the ``simclr-*`` rows of
docs/benchmarks.md) calls it on globally pooled encoder features, one pair per slice.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def pixel_ntxent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.53) -> torch.Tensor:
    """NT-Xent over aligned pixel vectors ``z1, z2``: ``(N, D)`` each -> scalar."""
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(
            f"Expected two (N, D) tensors of equal shape, got {z1.shape}, {z2.shape}."
        )
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(sim, target)
