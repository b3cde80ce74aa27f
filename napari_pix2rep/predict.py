"""Whole-volume prediction back onto the image's native grid.

A 3D ``(z, y, x)`` or 4D ``(t, z, y, x)`` image is normalised (per 3D frame), resampled
to the model's spacing and padded, its slices go through the segmenter in batches, the
class probabilities are mapped back to the native grid (bilinear, the exact inverse of
the forward resampling) and the label is their argmax. Optional clean-up keeps the
heart's 3D connected component and each class's largest component in it (per frame).

With a :class:`~napari_pix2rep.localise.HeartRegion` only the region goes through the
network (intensities still normalised over the whole volume): outside it every voxel is
background with probability 1, and the clean-up keeps the component in the region.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from .device import release_memory, resolve_device
from .localise import HeartRegion
from .preprocess import prepare_volume, to_native
from .segment import Segmenter

#: Context the network sees around a heart region, mm (features near a crop's edge differ).
REGION_CONTEXT_MM = 30.0

#: Clean-up on by default: on the validation patients (DESIGN.md split) it raised the
#: few-slice linear-probe DICE from 0.325 to 0.459 and one-shot fine-tuning from 0.301
#: to 0.315 (docs/benchmarks.md).
DEFAULT_CLEANUP = True


@dataclass
class Prediction:
    """``labels`` (uint8, the image's shape) and ``probabilities`` ``(K, *shape)`` float16."""

    labels: np.ndarray
    probabilities: np.ndarray

    def uncertainty(self) -> np.ndarray:
        """1 - max probability per voxel (0 = certain), float32, the image's shape."""
        return 1.0 - self.probabilities.max(axis=0).astype(np.float32)


def largest_component(
    labels: np.ndarray, n_classes: int, region: HeartRegion | None = None
) -> np.ndarray:
    """Keep the heart and, in it, each class's largest 3D connected component (per frame).

    The heart is the 3D connected component of all foreground classes together with the
    most voxels in ``region`` (without a region: the largest), so a stray blob far from
    the heart goes even when it is bigger; then, inside it, each class keeps only its
    largest component. Removed voxels become background. ``labels`` is ``(z, y, x)`` or
    ``(t, z, y, x)``.
    """
    out = labels.copy()
    frames = out[None] if out.ndim == 3 else out
    inside = region.mask(frames.shape[1:]) if region is not None else None
    for frame in frames:
        for c, mask in enumerate([frame > 0] + [frame == c for c in range(1, n_classes)]):
            comp, n = ndimage.label(mask)
            if n > 1:
                where = comp[inside] if c == 0 and inside is not None else comp
                sizes = np.bincount(where.ravel(), minlength=n + 1)
                sizes[0] = 0
                frame[(comp != sizes.argmax()) & (comp > 0)] = 0
    return out


@torch.no_grad()
def predict_volume(
    segmenter: Segmenter,
    data: np.ndarray,
    spacing: tuple[float, ...],
    device: str | torch.device = "auto",
    batch_size: int = 8,
    cleanup: bool = DEFAULT_CLEANUP,
    progress: Callable[[int, int], None] | None = None,
    region: HeartRegion | None = None,
) -> Prediction:
    """Segment every slice (and frame) of ``data``; see the module docstring."""
    data = np.asarray(data)
    if data.ndim not in (3, 4):
        raise ValueError(f"Expected a 3D or 4D image, got {data.ndim} dimensions.")
    dev = resolve_device(device)
    segmenter = segmenter.to(dev).eval()
    window = (slice(None), slice(None))
    if region is not None:
        grow = tuple(int(np.ceil(REGION_CONTEXT_MM / max(float(s), 1e-3))) for s in spacing[-2:])
        window = region.grown(grow, data.shape).slices()
    prepared = prepare_volume(
        data,
        spacing,
        segmenter.preprocess,
        segmenter.backbone.config.stride,
        crop=window if region is not None else None,
    )
    n = prepared.x.shape[0]
    k = segmenter.n_classes
    # written below: the network's window, then (with a region) all outside the region,
    # which holds everything outside the window
    probs = np.empty((n, k, *data.shape[-2:]), dtype=np.float16)
    use_amp = dev.type == "cuda"
    try:
        for i in range(0, n, batch_size):
            x = prepared.x[i : i + batch_size]
            if dev.type == "cuda":
                x = x.pin_memory()
            x = x.to(dev, non_blocking=True).contiguous(memory_format=torch.channels_last)
            with torch.autocast(dev.type, enabled=use_amp):
                logits = segmenter(x)
            p = to_native(logits.float().softmax(1), prepared)
            probs[i : i + len(x), :, window[0], window[1]] = p.cpu().numpy()
            if progress is not None:
                progress(min(i + batch_size, n), n)
    finally:
        release_memory(dev)
    if region is not None:
        outside = ~region.mask(data.shape[-2:])
        probs[:, 1:, outside] = 0.0
        probs[:, 0, outside] = 1.0
    probs = probs.reshape(*data.shape[:-2], k, *data.shape[-2:])
    probs = np.moveaxis(probs, -3, 0)
    labels = probs.argmax(axis=0).astype(np.uint8)
    if cleanup:
        labels = largest_component(labels, k, region)
    return Prediction(labels, probs)
