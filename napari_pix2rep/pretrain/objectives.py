"""Pretraining objectives: the Pix2Rep dense losses and the image-level SimCLR baseline.

One Pix2Rep step, for a batch of slices x ``(B, 1, S, S)``:

1. two intensity-augmented views v1, v2; one random affine phi per slice warps v2;
2. both views through the backbone f (one batch): ``(2B, D, S, S)``;
3. the view-1 feature map is warped by the same phi, so ``phi . f(v1)`` and
   ``f(phi . v2)`` are pixel-aligned; pixels whose source is outside the field of view
   are masked out;
4. aligned pixel vectors (N sampled pairs for InfoNCE, all or many for Barlow) go
   through the projector g and the loss.

Each objective is one module (backbone + projector + loss) so DDP can wrap it; the run
around it is :class:`napari_pix2rep.pretrain.run.Pretrainer`.
"""

from __future__ import annotations

import torch
from torch import nn

from napari_pix2rep.losses.pixel_barlow import pixel_barlow
from napari_pix2rep.losses.pixel_ntxent import pixel_ntxent
from napari_pix2rep.model.nets.heads import ProjectionHead
from napari_pix2rep.pretrain import augment
from napari_pix2rep.pretrain.config import PretrainConfig


class SimCLRObjective(nn.Module):
    """Image-level SimCLR baseline (the ``simclr-*`` rows of docs/benchmarks.md): only the
    encoder learns.

    ``forward(v1, v2w, theta, gen)``: the bottleneck of each view is averaged over space,
    projected (Linear -> BN -> ReLU -> Linear) and the two views of a slice form the
    positive pair of an NT-Xent over the batch ``(2B vectors)``. The decoder keeps its
    random initialisation, as for any encoder-only pretraining.
    """

    def __init__(self, backbone: nn.Module, cfg: PretrainConfig) -> None:
        super().__init__()
        self.backbone = backbone
        self.projector = ProjectionHead(backbone.config.widths[-1], out_dim=128)
        self.cfg = cfg

    def forward(
        self, v1: torch.Tensor, v2w: torch.Tensor, theta: torch.Tensor, gen: torch.Generator
    ) -> torch.Tensor:
        pooled = self.backbone.encode(torch.cat([v1, v2w]))[-1].float().mean(dim=(2, 3))
        z1, z2 = self.projector(pooled).chunk(2)
        return pixel_ntxent(z1, z2, self.cfg.temperature)


class Pix2RepObjective(nn.Module):
    """Backbone + projector + loss, as one module so DDP can wrap it.

    ``forward(v1, v2w, theta, gen)``: views ``(B, 1, S, S)`` (v2 already warped by
    ``theta`` ``(B, 2, 3)``) -> scalar loss.
    """

    def __init__(self, backbone: nn.Module, cfg: PretrainConfig) -> None:
        super().__init__()
        self.backbone = backbone
        dim = backbone.config.out_channels
        self.projector = ProjectionHead(dim)
        self.cfg = cfg

    def aligned_features(
        self, v1: torch.Tensor, v2w: torch.Tensor, theta: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``phi . f(v1)``, ``f(v2w)`` (each ``(B, D, S, S)``) and the valid mask ``(B, S, S)``."""
        feats = self.backbone(torch.cat([v1, v2w]))
        f1, f2 = feats.chunk(2)
        f1w = augment.warp(f1.float(), theta)
        return f1w, f2.float(), augment.valid_mask(theta, tuple(v1.shape[-2:]))

    def forward(
        self, v1: torch.Tensor, v2w: torch.Tensor, theta: torch.Tensor, gen: torch.Generator
    ) -> torch.Tensor:
        f1w, f2, valid = self.aligned_features(v1, v2w, theta)
        n = self.cfg.n_pixels if self.cfg.loss == "infonce" else self.cfg.barlow_pixels
        z1, z2 = sample_aligned_pixels(f1w, f2, valid, n, gen)
        z = self.projector(torch.cat([z1, z2])).float()
        z1, z2 = z.chunk(2)
        if self.cfg.loss == "infonce":
            return pixel_ntxent(z1, z2, self.cfg.temperature)
        return pixel_barlow(z1, z2, self.cfg.barlow_lambda)


def sample_aligned_pixels(
    f1: torch.Tensor, f2: torch.Tensor, valid: torch.Tensor, n: int | None, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel vectors at ``n`` random valid positions (all valid ones if None): ``(n, D)`` x 2.

    The same positions are taken from both aligned maps ``(B, D, H, W)``.
    """
    idx = valid.flatten().nonzero().squeeze(1)
    if idx.numel() < 2:
        raise RuntimeError("Fewer than two valid aligned pixels; check the augmentation ranges.")
    if n is not None and n < idx.numel():
        pick = torch.randperm(idx.numel(), generator=gen, device=gen.device)[:n]
        idx = idx[pick.to(idx.device)]
    d = f1.shape[1]
    v1 = f1.permute(0, 2, 3, 1).reshape(-1, d)[idx]
    v2 = f2.permute(0, 2, 3, 1).reshape(-1, d)[idx]
    return v1, v2
