"""Carry painted slices to another phase of the same stack by deformable registration.

Painted ED slices say nothing about the contracted heart; the cine does. For a painted
slice ``z`` of one phase (the *source*, e.g. ED) and the same slice of another phase
(the *target*, e.g. ES), a smooth in-plane displacement ``u`` is fitted so that
``source(x + u(x)) ≈ target(x)`` (local normalised cross-correlation plus a bending
penalty on a coarse control grid, Adam, coarse-to-fine); the painted labels are warped
with the same ``u`` (one-hot, bilinear) and pixels whose warped class is uncertain (the
boundaries, where a registration error would teach the wrong class) become ``IGNORE``.
The result is an extra annotated slice of the target phase, used for training only.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from .classes import IGNORE
from .localise import HeartRegion
from .preprocess import normalize_intensity


def _grid(h: int, w: int) -> torch.Tensor:
    """Identity sampling grid ``(1, h, w, 2)`` in grid_sample's (x, y) [-1, 1] convention."""
    ys = torch.linspace(-1.0, 1.0, h)
    xs = torch.linspace(-1.0, 1.0, w)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], -1)[None]


def _local_ncc(a: torch.Tensor, b: torch.Tensor, win: int = 9) -> torch.Tensor:
    """Mean local normalised cross-correlation of ``(1, 1, H, W)`` images (1 = identical)."""
    pad = win // 2
    mean = lambda t: F.avg_pool2d(t, win, 1, pad, count_include_pad=False)  # noqa: E731
    ma, mb = mean(a), mean(b)
    va = mean(a * a) - ma * ma
    vb = mean(b * b) - mb * mb
    cov = mean(a * b) - ma * mb
    return (cov * cov / (va * vb + 1e-4)).mean()


def register_slice(
    source: np.ndarray,
    target: np.ndarray,
    control_spacing: int = 8,
    steps: int = 80,
    smooth: float = 0.1,
) -> torch.Tensor:
    """Displacement grid ``(1, H, W, 2)`` (grid_sample units) taking ``source`` onto ``target``.

    ``source`` and ``target`` are 2D ``(H, W)`` float arrays of the same shape (already
    intensity-normalised). Control points every ``control_spacing`` pixels, two levels
    (half resolution first), ``steps`` Adam steps per level.
    """
    src = torch.as_tensor(source, dtype=torch.float32)[None, None]
    tgt = torch.as_tensor(target, dtype=torch.float32)[None, None]
    h, w = src.shape[-2:]
    ch, cw = max(2, h // control_spacing + 1), max(2, w // control_spacing + 1)
    disp = torch.zeros(1, 2, ch // 2 + 1, cw // 2 + 1, requires_grad=True)
    for level, scale in enumerate((0.5, 1.0)):
        if level:
            disp = F.interpolate(disp.detach(), size=(ch, cw), mode="bilinear", align_corners=True)
            disp.requires_grad_(True)
        size = (max(8, int(h * scale)), max(8, int(w * scale)))
        s = F.interpolate(src, size=size, mode="bilinear", align_corners=True, antialias=True)
        t = F.interpolate(tgt, size=size, mode="bilinear", align_corners=True, antialias=True)
        base = _grid(*size)
        opt = torch.optim.Adam([disp], lr=0.01)
        for _ in range(steps):
            field = F.interpolate(disp, size=size, mode="bicubic", align_corners=True)
            warped = F.grid_sample(
                s, base + field.permute(0, 2, 3, 1), align_corners=True, padding_mode="border"
            )
            dy = disp[:, :, 1:] - disp[:, :, :-1]
            dx = disp[:, :, :, 1:] - disp[:, :, :, :-1]
            bend = (dy * dy).mean() + (dx * dx).mean()
            loss = -_local_ncc(warped, t) + smooth * bend * (ch * cw) / 4.0
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    with torch.no_grad():
        field = F.interpolate(disp, size=(h, w), mode="bicubic", align_corners=True)
        return field.permute(0, 2, 3, 1)


def warp_labels(
    labels: np.ndarray, displacement: torch.Tensor, n_classes: int, confidence: float = 0.9
) -> np.ndarray:
    """Warp a 2D label slice ``(H, W)``; uncertain pixels become ``IGNORE``. int64 ``(H, W)``."""
    lab = torch.as_tensor(labels.astype(np.int64))
    onehot = F.one_hot(lab.clamp(0, n_classes - 1), n_classes).permute(2, 0, 1)[None].float()
    h, w = lab.shape
    warped = F.grid_sample(
        onehot, _grid(h, w) + displacement, align_corners=True, padding_mode="border"
    )[0]
    p, cls = warped.max(0)
    out = cls.numpy().astype(np.int64)
    out[p.numpy() < confidence] = IGNORE
    return out


def carry_slice(
    source: np.ndarray,
    target: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    region: HeartRegion | None = None,
) -> np.ndarray:
    """One painted slice carried from ``source`` to ``target``: int64 ``(H, W)``.

    ``source`` and ``target`` are the same slice ``(H, W)`` of two phases, intensity-
    normalised over their volumes (:func:`~napari_pix2rep.preprocess.normalize_intensity`);
    ``labels`` is the source's painted ``(H, W)``. Only ``region`` (when given) is
    registered; the rest of the slice is background, as in the source.
    """
    ys, xs = region.slices() if region is not None else (slice(None), slice(None))
    plane = np.zeros(labels.shape, dtype=np.int64)
    disp = register_slice(source[ys, xs], target[ys, xs])
    plane[ys, xs] = warp_labels(labels[ys, xs], disp, n_classes)
    return plane


def propagate_slices(
    source_volume: np.ndarray,
    target_volume: np.ndarray,
    labels: np.ndarray,
    slices: list[int],
    n_classes: int,
    region: HeartRegion | None = None,
) -> np.ndarray:
    """Painted ``slices`` of ``labels`` (on ``source_volume``) carried to ``target_volume``.

    Volumes are 3D ``(z, y, x)`` of the same shape (two phases of one stack); ``labels``
    is the source's ``(z, y, x)`` annotation. Returns an int64 ``(z, y, x)`` annotation
    of the target in the ``full`` convention of :mod:`napari_pix2rep.annotations`: the
    propagated slices hold the warped classes with ``IGNORE`` where uncertain, every other
    slice is 0 (unannotated). See :func:`carry_slice`.
    """
    src = normalize_intensity(source_volume)
    tgt = normalize_intensity(target_volume)
    out = np.zeros(labels.shape, dtype=np.int64)
    for z in slices:
        out[z] = carry_slice(src[z], tgt[z], labels[z], n_classes, region)
    return out
