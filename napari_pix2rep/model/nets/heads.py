"""Heads put on the backbone's features: its dense output ``(N, D, H, W)`` or its
levels (:meth:`~napari_pix2rep.model.nets.unet.UNet.feature_levels`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from napari_pix2rep.model.nets.unet import project_levels

#: The class heads a segmenter file may hold (``head["type"]``).
HEAD_TYPES = ("linear", "hypercolumn")


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


class HypercolumnHead(nn.Module):
    """A linear head on every level of the U-Net (the bottleneck and each decoder level),
    as if each were upsampled bilinearly to full resolution and concatenated:
    ``levels`` ``[(N, C_i, H_i, W_i)]`` (coarsest first, the last at full resolution)
    ``-> (N, K, H, W)``.

    ``conv`` holds the weight ``(K, sum of C_i, 1, 1)`` (columns in level order) and the
    bias ``(K,)``; it is applied by :func:`~napari_pix2rep.model.nets.unet.project_levels`,
    each level projected to K channels at its own resolution and then upsampled, so the
    ``sum of C_i``-channel full-resolution hypercolumn is never built.
    """

    def __init__(self, level_widths: Sequence[int], n_classes: int) -> None:
        super().__init__()
        self.level_widths = tuple(int(c) for c in level_widths)
        self.conv = nn.Conv2d(sum(self.level_widths), n_classes, 1)

    def forward(self, levels: Sequence[torch.Tensor]) -> torch.Tensor:
        if tuple(f.shape[1] for f in levels) != self.level_widths:
            raise ValueError(
                f"The hypercolumn head reads levels of {self.level_widths} channels, "
                f"not {tuple(f.shape[1] for f in levels)}."
            )
        return project_levels(list(levels), self.conv.weight, self.conv.bias)
