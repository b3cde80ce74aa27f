"""Fine-tuning crops: each one resampled from a whole annotated slice through its own
random rotation, scale, optional mirroring and elastic warp.

Spatial ranges come from an :class:`~napari_pix2rep.pretrain.augment.AugmentConfig` (the same
fields as Pix2Rep's views). Sampling the transform on the whole slice (not on a crop cut
out first) means a rotated or zoomed-out crop shows real image in its corners instead of
padding. A crop is centred, with probability ``foreground_p``, on a random labelled
structure pixel (the heart is a few percent of the view; uniform crops would mostly teach
background), otherwise on a random labelled pixel of the slice.

Shapes: a slice's image is ``(1, H, W)`` and its target ``(H, W)`` (``-1`` =
unlabelled); a batch of ``n`` crops of side ``c`` is ``(n, 1, c, c)`` and ``(n, c, c)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch.nn import functional as F

from napari_pix2rep.core.classes import IGNORE
from napari_pix2rep.pretrain.augment import AugmentConfig

#: Control points per side of the elastic displacement field.
ELASTIC_GRID = 5


def _centre(
    target: torch.Tensor, foreground_p: float, gen: torch.Generator
) -> tuple[float, float]:
    """A crop centre (row, column) in pixels: on the structures or anywhere labelled."""
    if float(torch.rand(1, generator=gen)) < foreground_p:
        where = torch.nonzero(target > 0)
        if len(where):
            r, c = where[int(torch.randint(len(where), (1,), generator=gen))].tolist()
            return float(r), float(c)
    where = torch.nonzero(target != IGNORE)
    if not len(where):  # nothing labelled (should not happen): the slice centre
        return (target.shape[0] - 1) / 2.0, (target.shape[1] - 1) / 2.0
    r, c = where[int(torch.randint(len(where), (1,), generator=gen))].tolist()
    return float(r), float(c)


def crop_grid(
    centre: tuple[float, float],
    shape: tuple[int, int],
    size: int,
    aug: AugmentConfig,
    gen: torch.Generator,
    elastic_px: float = 0.0,
) -> torch.Tensor:
    """Sampling grid ``(1, size, size, 2)`` (``grid_sample`` form, ``align_corners=False``)
    of one crop of a slice of ``shape`` around ``centre``, through a random transform:
    rotation U(-r, r) degrees, scale log-uniform in ``[scale_min, scale_max]`` (the crop
    shows ``scale`` times its side of the slice; above 1 zooms out), a mirror with
    probability ``flip_p`` (``aug``), and a smooth displacement of standard deviation
    ``elastic_px`` crop pixels on an :data:`ELASTIC_GRID` control grid."""
    c = size
    h, w = shape
    u = torch.rand(4, generator=gen)
    angle = math.radians(aug.rotation_deg) * (2 * float(u[0]) - 1)
    log_lo, log_hi = math.log(aug.scale_min), math.log(aug.scale_max)
    scale = math.exp(log_lo + (log_hi - log_lo) * float(u[1]))
    flip = -1.0 if float(u[2]) < aug.flip_p else 1.0
    offs = torch.arange(c, dtype=torch.float32) - (c - 1) / 2.0
    oy, ox = torch.meshgrid(offs, offs, indexing="ij")
    ox = ox * flip
    if elastic_px > 0:
        g = ELASTIC_GRID
        coarse = torch.randn(1, 2, g, g, generator=gen) * elastic_px
        field = F.interpolate(coarse, size=(c, c), mode="bicubic", align_corners=True)[0]
        oy, ox = oy + field[0], ox + field[1]
    cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
    rows = centre[0] + cos * oy - sin * ox
    cols = centre[1] + sin * oy + cos * ox
    # pixel centres -> normalised coordinates (align_corners=False)
    gx = (2 * cols + 1) / w - 1
    gy = (2 * rows + 1) / h - 1
    return torch.stack([gx, gy], dim=-1)[None]


def sample_crops(
    images: Sequence[torch.Tensor],
    targets: Sequence[torch.Tensor],
    n: int,
    size: int,
    aug: AugmentConfig,
    gen: torch.Generator,
    foreground_p: float = 0.67,
    elastic_px: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` crops of side ``size`` of random slices, each through its own random transform
    (:func:`crop_grid`): images ``(n, 1, size, size)``, targets ``(n, size, size)``.

    ``images[i]`` is ``(1, H_i, W_i)`` and ``targets[i]`` ``(H_i, W_i)`` (long, ``-1`` =
    unlabelled); slices may differ in size. Images are resampled bilinearly (edge values
    outside the slice), targets by nearest neighbour (``-1`` outside the slice).
    """
    xs, ts = [], []
    for i in torch.randint(len(images), (n,), generator=gen).tolist():
        x, t = images[i], targets[i]
        centre = _centre(t, foreground_p, gen)
        grid = crop_grid(centre, tuple(t.shape), size, aug, gen, elastic_px)
        grid = grid.to(x.device)
        xs.append(
            F.grid_sample(
                x[None].float(), grid, mode="bilinear", padding_mode="border", align_corners=False
            )[0]
        )
        shifted = (t.to(x.device).float() + 1)[None, None]  # IGNORE -> 0 = outside too
        tw = F.grid_sample(
            shifted, grid, mode="nearest", padding_mode="zeros", align_corners=False
        )
        ts.append(tw[0, 0].long() - 1)
    return torch.stack(xs), torch.stack(ts)
