"""Carry painted slices to another phase of the same stack by deformable registration.

Painted ED slices say nothing about the contracted heart; the cine does. For a painted
slice ``z`` of one phase (the *source*, e.g. ED) and the same slice of another phase
(the *target*, e.g. ES), a smooth in-plane displacement ``u`` is fitted so that
``source(x + u(x)) ≈ target(x)`` (local normalised cross-correlation plus a bending
penalty on a coarse control grid, Adam, coarse-to-fine); the painted labels are warped
with the same ``u`` (one-hot, bilinear) and pixels whose warped class is uncertain (the
boundaries, where a registration error would teach the wrong class) become ``IGNORE``.
The result is an extra annotated slice of the target phase, used for training only.

The same registration carries a whole prediction: the segmenter's class probabilities of
the source phase, warped slice by slice onto the target (:func:`carry_probabilities_iter`),
are blended with the target's own (:func:`fuse_probabilities`), so each voxel of ES is
decided by what the probe sees there and by where ED's heart moved to.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.nn import functional as F

from napari_pix2rep.core.classes import IGNORE
from napari_pix2rep.core.progress import Progress, StopCheck, never
from napari_pix2rep.model.preprocess import normalize_intensity
from napari_pix2rep.segment.localise import HeartRegion
from napari_pix2rep.segment.settings import FUSE_WEIGHT, Registration

if TYPE_CHECKING:
    from napari_pix2rep.segment.predict import Prediction


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
    source: np.ndarray, target: np.ndarray, settings: Registration | None = None
) -> torch.Tensor:
    """Displacement grid ``(1, H, W, 2)`` (grid_sample units) taking ``source`` onto ``target``.

    ``source`` and ``target`` are 2D ``(H, W)`` float arrays of the same shape (already
    intensity-normalised). Two levels (half resolution first); ``settings`` set the control
    grid, the steps per level and the bending weight (None: the shipped ones).
    """
    settings = settings or Registration()
    control_spacing, steps, smooth = settings.control_spacing, settings.steps, settings.bending
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
    registration: Registration | None = None,
) -> np.ndarray:
    """One painted slice carried from ``source`` to ``target``: int64 ``(H, W)``.

    ``source`` and ``target`` are the same slice ``(H, W)`` of two phases, intensity-
    normalised over their volumes (:func:`~napari_pix2rep.model.preprocess.normalize_intensity`);
    ``labels`` is the source's painted ``(H, W)``. Only ``region`` (when given) is
    registered (:func:`register_slice` with ``registration``); the rest of the slice is
    background, as in the source.
    """
    ys, xs = region.slices() if region is not None else (slice(None), slice(None))
    plane = np.zeros(labels.shape, dtype=np.int64)
    disp = register_slice(source[ys, xs], target[ys, xs], registration)
    plane[ys, xs] = warp_labels(labels[ys, xs], disp, n_classes)
    return plane


def carry_slices_iter(
    source_volume: np.ndarray,
    target_volume: np.ndarray,
    labels: np.ndarray,
    slices: Sequence[int],
    n_classes: int,
    region: HeartRegion | None = None,
    registration: Registration | None = None,
    should_stop: StopCheck = never,
    message: str = "Carrying painted slices",
) -> Generator[Progress, None, np.ndarray | None]:
    """Painted ``slices`` of ``labels`` (on ``source_volume``) carried to ``target_volume``.

    Volumes are 3D ``(z, y, x)`` of the same shape (two phases of one stack, or two frames
    of a cine); ``labels`` is the source's ``(z, y, x)`` annotation. Yields
    ``Progress("carry", done, len(slices), message)`` before each slice; returns an int64
    ``(z, y, x)`` annotation of the target in the ``full`` convention of
    :mod:`napari_pix2rep.annotate.annotations` (the carried slices hold the warped classes with
    ``IGNORE`` where uncertain, every other slice is 0: unannotated), or None when
    ``should_stop()`` said so between slices. See :func:`carry_slice`.
    """
    src = normalize_intensity(source_volume)
    tgt = normalize_intensity(target_volume)
    out = np.zeros(np.shape(labels), dtype=np.int64)
    for done, z in enumerate(slices):
        yield Progress("carry", done, len(slices), message=message)
        if should_stop():
            return None
        out[z] = carry_slice(
            src[z], tgt[z], np.asarray(labels[z]), n_classes, region, registration
        )
    return out


def carry_probabilities_iter(
    source_probs: np.ndarray,
    source_volume: np.ndarray,
    target_volume: np.ndarray,
    region: HeartRegion | None = None,
    should_stop: StopCheck = never,
    registration: Registration | None = None,
) -> Generator[Progress, None, np.ndarray | None]:
    """Class probabilities ``(K, z, y, x)`` of the source phase carried onto the target.

    ``source_volume`` and ``target_volume`` are two phases ``(z, y, x)`` of one stack and
    ``source_probs`` the source's prediction on that grid. Each slice (only ``region``,
    when given; outside it the source's probabilities stay as they are) is registered
    source → target as in :func:`carry_slice` and its probabilities warped (bilinear).
    A slice where background is everywhere the likelier class is not registered (it says
    "no heart here" wherever it goes). Yields ``Progress("fuse", slice, slices)``; returns
    float32 ``(K, z, y, x)``, or None when ``should_stop()`` said so between slices.
    """
    src = normalize_intensity(source_volume)
    tgt = normalize_intensity(target_volume)
    ys, xs = region.slices() if region is not None else (slice(None), slice(None))
    out = np.array(source_probs, dtype=np.float32)
    n = out.shape[1]
    for z in range(n):
        yield Progress("fuse", z, n, message=f"Carrying the other phase's masks: slice {z + 1}")
        if should_stop():
            return None
        p = torch.from_numpy(np.ascontiguousarray(out[:, z, ys, xs]))[None]
        if float(p[0, 0].min()) >= 0.5:  # no heart here: "background" wherever it goes
            continue
        disp = register_slice(src[z][ys, xs], tgt[z][ys, xs], registration)
        h, w = p.shape[-2:]
        warped = F.grid_sample(p, _grid(h, w) + disp, align_corners=True, padding_mode="border")
        out[:, z, ys, xs] = warped[0].numpy()
    yield Progress("fuse", n, n, message="Carried the other phase's masks")
    return out


def fuse_probabilities(
    target_probs: np.ndarray, carried: Sequence[np.ndarray], weight: float = FUSE_WEIGHT
) -> np.ndarray:
    """``(1 - weight) · target + weight · mean(carried)``: float16 ``(K, z, y, x)``.

    ``target_probs`` is the target phase's own prediction and ``carried`` the other
    phases' predictions carried onto it (:func:`carry_probabilities_iter`), all of one
    shape; with nothing carried the target's probabilities are returned as they are.
    """
    if not carried:
        return target_probs
    other = np.mean([np.asarray(c, dtype=np.float32) for c in carried], axis=0)
    fused = (1.0 - weight) * np.asarray(target_probs, dtype=np.float32) + weight * other
    return fused.astype(np.float16)


def fuse_iter(
    target_probs: np.ndarray,
    target_volume: np.ndarray,
    sources: Sequence[tuple[np.ndarray, np.ndarray]],
    cleanup: bool = True,
    region: HeartRegion | None = None,
    should_stop: StopCheck = never,
    registration: Registration | None = None,
    weight: float = FUSE_WEIGHT,
) -> Generator[Progress, None, Prediction | None]:
    """The fused :class:`~napari_pix2rep.segment.predict.Prediction` of a 3D target from its own
    class probabilities ``(K, z, y, x)`` and ``sources``: ``(volume, probabilities)`` of
    other phases of its stack, already predicted, carried with ``registration`` and
    blended with ``weight`` (:func:`fuse_probabilities`). None when stopped."""
    from napari_pix2rep.segment.predict import label_probabilities

    carried = []
    for volume, probs in sources:
        c = yield from carry_probabilities_iter(
            probs, volume, target_volume, region, should_stop, registration
        )
        if c is None:
            return None
        carried.append(c)
    fused = fuse_probabilities(target_probs, carried, weight)
    return label_probabilities(fused, cleanup, region)
