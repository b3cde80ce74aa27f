"""Heads put on the backbone's dense features ``(N, D, H, W)``."""

from __future__ import annotations

import torch
from torch import nn


class ProjectionHead(nn.Module):
    """Pix2Rep's pretraining projector g: Linear -> BatchNorm -> ReLU -> Linear.

    Applied to pixel vectors ``(n, D) -> (n, out_dim)``; on a feature map this is the
    authors' 1x1 conv -> BN -> ReLU -> 1x1 conv, evaluated only at the pixels the loss
    uses (BatchNorm statistics over those pixels). Used for pretraining only.
    """

    def __init__(self, in_dim: int, hidden_dim: int | None = None, out_dim: int | None = None):
        super().__init__()
        hidden_dim = hidden_dim or in_dim
        out_dim = out_dim or in_dim
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim, bias=False),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class LinearHead(nn.Module):
    """1x1 convolution from D features to class scores: ``(N, D, H, W) -> (N, K, H, W)``."""

    def __init__(self, in_dim: int, n_classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_dim, n_classes, 1)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.conv(f)
