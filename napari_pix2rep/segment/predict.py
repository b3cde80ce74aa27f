"""Whole-volume prediction back onto the image's native grid.

A 3D ``(z, y, x)`` or 4D ``(t, z, y, x)`` image is normalised (per 3D frame), resampled
to the model's spacing and padded, its slices go through the segmenter in batches, the
class probabilities are mapped back to the native grid (bilinear, the exact inverse of
the forward resampling) and the label is their argmax. Optional clean-up keeps the
heart's 3D connected component and each class's largest component in it (per frame).

With ``flip_average`` each batch also goes through the network mirrored left-right and
the two probability maps (the mirrored one mirrored back) are averaged: test-time
augmentation, twice the network time. ``None`` (the default) does what the model file
says (:attr:`~napari_pix2rep.model.segmenter.Segmenter.flip_average`: the default cardiac
model asks for it).

With a :class:`~napari_pix2rep.segment.localise.HeartRegion` only the region goes through the
network (intensities still normalised over the whole volume): outside it every voxel is
background with probability 1, and the clean-up keeps the component in the region.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from napari_pix2rep.core.progress import Progress, run_to_end
from napari_pix2rep.model.device import release_memory, resolve_device
from napari_pix2rep.model.preprocess import prepare_volume, to_native
from napari_pix2rep.model.segmenter import Segmenter
from napari_pix2rep.segment.localise import HeartRegion

#: Context the network sees around a heart region, mm (features near a crop's edge differ).
REGION_CONTEXT_MM = 30.0

#: Clean-up on by default: on the validation patients (ids multiple of 5) it raised the
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

    One rule, applied once per frame: first the heart, the 3D connected component of all
    foreground classes together with the most voxels in ``region`` (without a region: the
    largest), so a stray blob far from the heart goes even when it is bigger; then, inside
    what is left, each class keeps only its largest component (so a stray blob can never
    take a class's place). Removed voxels become background. ``labels`` is ``(z, y, x)``
    or ``(t, z, y, x)``.
    """
    out = labels.copy()
    frames = out[None] if out.ndim == 3 else out
    inside = region.mask(frames.shape[1:]) if region is not None else None
    for frame in frames:
        frame[~_largest(frame > 0, inside)] = 0
        for c in range(1, n_classes):
            mine = frame == c
            frame[mine & ~_largest(mine, None)] = 0
    return out


def _largest(mask: np.ndarray, inside: np.ndarray | None) -> np.ndarray:
    """The connected component of ``mask`` with the most voxels in ``inside`` (None: the
    largest); ``mask`` itself when it has at most one component."""
    comp, n = ndimage.label(mask)
    if n <= 1:
        return mask
    where = comp[inside] if inside is not None else comp
    sizes = np.bincount(where.ravel(), minlength=n + 1)
    sizes[0] = 0
    return comp == sizes.argmax()


def predict_iter(
    segmenter: Segmenter,
    data: np.ndarray,
    spacing: tuple[float, ...],
    device: str | torch.device = "auto",
    batch_size: int = 8,
    cleanup: bool = DEFAULT_CLEANUP,
    region: HeartRegion | None = None,
    flip_average: bool | None = None,
) -> Generator[Progress, None, Prediction]:
    """Segment every slice (and frame) of ``data``, yielding after every batch of slices.

    A 4D cine goes frame by frame (the same result as all at once: each frame is
    normalised on its own), so only one frame's slices are prepared at a time and the
    run can stop between any two batches (close the generator). See the module docstring.
    """
    data = np.asarray(data)
    if data.ndim not in (3, 4):
        raise ValueError(f"Expected a 3D or 4D image, got {data.ndim} dimensions.")
    dev = resolve_device(device)
    segmenter = segmenter.to(dev).eval()
    flip = segmenter.flip_average if flip_average is None else bool(flip_average)
    try:
        if data.ndim == 3:
            probs = yield from _predict_frame(
                segmenter,
                data,
                spacing,
                dev,
                batch_size,
                region,
                flip,
                lambda done, n: Progress("predict", done, n, message="Segmenting every slice"),
            )
        else:
            n_frames = data.shape[0]
            probs = np.empty((segmenter.n_classes, *data.shape), dtype=np.float16)
            for t in range(n_frames):
                msg = f"Segmenting frame {t + 1} of {n_frames}"
                probs[:, t] = yield from _predict_frame(
                    segmenter,
                    data[t],
                    spacing[1:],
                    dev,
                    batch_size,
                    region,
                    flip,
                    lambda done, n, t=t, msg=msg: Progress("predict", t, n_frames, message=msg),
                )
            yield Progress("predict", n_frames, n_frames, message=f"Segmented {n_frames} frames")
    finally:
        release_memory(dev)
    return label_probabilities(probs, cleanup, region)


def label_probabilities(
    probs: np.ndarray, cleanup: bool = DEFAULT_CLEANUP, region: HeartRegion | None = None
) -> Prediction:
    """The :class:`Prediction` of class probabilities ``(K, *shape)``: argmax, then (with
    ``cleanup``) :func:`largest_component` in ``region``."""
    labels = probs.argmax(axis=0).astype(np.uint8)
    if cleanup:
        labels = largest_component(labels, probs.shape[0], region)
    return Prediction(labels, probs)


def _predict_frame(
    segmenter: Segmenter,
    data: np.ndarray,
    spacing: tuple[float, ...],
    dev: torch.device,
    batch_size: int,
    region: HeartRegion | None,
    flip: bool,
    report: Callable[[int, int], Progress],
) -> Generator[Progress, None, np.ndarray]:
    """Class probabilities ``(K, z, y, x)`` float16 of a 3D ``data``, batch by batch,
    yielding ``report(slices done, slices)`` after each batch; ``flip``: averaged with the
    left-right mirror's (mirrored back)."""
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
    probs = np.empty((k, n, *data.shape[-2:]), dtype=np.float16)
    outside = ~region.mask(data.shape[-2:]) if region is not None else None
    use_amp = dev.type == "cuda"
    for i in range(0, n, batch_size):
        x = prepared.x[i : i + batch_size]
        if dev.type == "cuda":
            x = x.pin_memory()
        x = x.to(dev, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), torch.autocast(dev.type, enabled=use_amp):
            p = segmenter(x).float().softmax(1)
            if flip:
                p = 0.5 * (p + segmenter(x.flip(-1)).float().softmax(1).flip(-1))
        p = to_native(p, prepared).cpu().numpy()  # (b, K, h, w)
        part = probs[:, i : i + len(x)]
        part[:, :, window[0], window[1]] = np.moveaxis(p, 1, 0)
        if outside is not None:
            part[1:, :, outside] = 0.0
            part[0, :, outside] = 1.0
        yield report(min(i + batch_size, n), n)
    return probs


def predict_volume(
    segmenter: Segmenter,
    data: np.ndarray,
    spacing: tuple[float, ...],
    device: str | torch.device = "auto",
    batch_size: int = 8,
    cleanup: bool = DEFAULT_CLEANUP,
    region: HeartRegion | None = None,
    flip_average: bool | None = None,
) -> Prediction:
    """:func:`predict_iter` run to the end (scripts, benchmarks)."""
    return run_to_end(
        predict_iter(segmenter, data, spacing, device, batch_size, cleanup, region, flip_average)
    )
