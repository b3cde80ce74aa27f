"""Whole-volume prediction back onto the image's native grid.

A 3D ``(z, y, x)`` or 4D ``(t, z, y, x)`` image is normalised (per 3D frame), resampled
to the model's spacing and padded, its slices go through the segmenter in batches, the
class probabilities are mapped back to the native grid (bilinear, the exact inverse of
the forward resampling) and the label is their argmax. Optional clean-up keeps the
largest 3D connected component of each class (per frame).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from .device import release_memory, resolve_device
from .preprocess import prepare_volume, to_native
from .segment import Segmenter

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


def largest_component(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Keep the heart and, in it, each class's largest 3D connected component (per frame).

    The heart is the largest 3D connected component of all foreground classes together
    (so a stray blob of one class far from the others goes); then, inside it, each class
    keeps only its largest component. Removed voxels become background. ``labels`` is
    ``(z, y, x)`` or ``(t, z, y, x)``.
    """
    out = labels.copy()
    frames = out[None] if out.ndim == 3 else out
    for frame in frames:
        for mask in [frame > 0] + [frame == c for c in range(1, n_classes)]:
            comp, n = ndimage.label(mask)
            if n > 1:
                sizes = np.bincount(comp.ravel())
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
) -> Prediction:
    """Segment every slice (and frame) of ``data``; see the module docstring."""
    data = np.asarray(data)
    if data.ndim not in (3, 4):
        raise ValueError(f"Expected a 3D or 4D image, got {data.ndim} dimensions.")
    dev = resolve_device(device)
    segmenter = segmenter.to(dev).eval()
    prepared = prepare_volume(
        data, spacing, segmenter.preprocess, segmenter.backbone.config.stride
    )
    n = prepared.x.shape[0]
    k = segmenter.n_classes
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
            probs[i : i + len(x)] = p.cpu().numpy()
            if progress is not None:
                progress(min(i + batch_size, n), n)
    finally:
        release_memory(dev)
    probs = probs.reshape(*data.shape[:-2], k, *data.shape[-2:])
    probs = np.moveaxis(probs, -3, 0)
    labels = probs.argmax(axis=0).astype(np.uint8)
    if cleanup:
        labels = largest_component(labels, k)
    return Prediction(labels, probs)
