"""Where the heart is, without labels: a region of interest on the native grid.

The heart fills about 4 % of a short-axis field of view. Two cues find it without any
expert mask:

- **motion**: across the frames of a cine (or an ED/ES pair) the ventricles contract
  and nothing else in a breath-held short-axis stack moves as much. The temporal
  standard deviation of the per-frame normalised intensities, smoothed and summed over
  slices, peaks on the ventricles (:func:`motion_map`).
- **painted slices**: the foreground the user painted is the heart
  (:func:`region_from_annotation`).

A :class:`HeartRegion` is an in-plane box (the same on every slice, since a short-axis
stack is centred on the long axis) in native voxel coordinates. The clean-up keeps the
connected component at the heart (:func:`napari_pix2rep.segment.predict.heart_cleanup`).
No torch; looks at images (and the user's own annotations), never at a truth mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

#: Half-width of the region around the motion peak, mm. The peak sits on a ventricle, up
#: to ~40 mm from the heart's centre; with 90 mm at least 98.4 % of every validation
#: heart (ACDC ED and ES, 20 patients) is inside (benchmarks/localisation.py).
MOTION_HALF_MM = 90.0
#: Margin added around painted foreground, mm.
ANNOTATION_MARGIN_MM = 25.0
#: The motion peak (mean of the strongest 2 % of the map) over the map's median below
#: which nothing moves like a heart: the phantom's beating heart gives 3.9-7.7, a crop
#: without the heart 1.5, noise 1.05 (tests/segment/test_localise.py).
MIN_MOTION_CONTRAST = 2.5
#: A second moving structure at least this share of the peak and this far from it (mm;
#: farther than LV and RV are apart) may be what the region was centred on instead.
SECOND_PEAK, SECOND_PEAK_MM = 0.5, 60.0


@dataclass(frozen=True)
class HeartRegion:
    """An in-plane box ``[y0, y1) x [x0, x1)`` in native voxels, the same on every slice.

    ``centre`` is ``(y, x)`` in voxels (float); ``source`` says which cue found it;
    ``note`` is a sentence of doubt about it ("" when there is none, see
    :func:`motion_doubt`), for the user to read.
    """

    y0: int
    y1: int
    x0: int
    x1: int
    centre: tuple[float, float]
    source: str
    note: str = ""

    def slices(self) -> tuple[slice, slice]:
        """``(slice(y0, y1), slice(x0, x1))`` for indexing the last two axes."""
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    def mask(self, shape: tuple[int, ...]) -> np.ndarray:
        """Boolean array of ``shape`` (any leading axes, then ``(y, x)``): True in the box."""
        m = np.zeros(shape[-2:], dtype=bool)
        m[self.slices()] = True
        return np.broadcast_to(m, shape)

    def grown(self, by_yx: tuple[int, int], shape: tuple[int, ...]) -> HeartRegion:
        """The box grown by ``by_yx`` voxels on each side, clipped to ``shape[-2:]``."""
        h, w = shape[-2:]
        return HeartRegion(
            max(0, self.y0 - by_yx[0]),
            min(h, self.y1 + by_yx[0]),
            max(0, self.x0 - by_yx[1]),
            min(w, self.x1 + by_yx[1]),
            self.centre,
            self.source,
            self.note,
        )

    def area_fraction(self, shape: tuple[int, ...]) -> float:
        """Share of the in-plane field of view inside the box (0..1]."""
        return (self.y1 - self.y0) * (self.x1 - self.x0) / float(shape[-2] * shape[-1])


def _box(
    cy: float, cx: float, hy: float, hx: float, shape: tuple[int, int], source: str
) -> HeartRegion:
    """A box of half-sizes ``(hy, hx)`` voxels around ``(cy, cx)``, clipped to ``shape``."""
    h, w = shape
    y0, y1 = max(0, int(np.floor(cy - hy))), min(h, int(np.ceil(cy + hy)) + 1)
    x0, x1 = max(0, int(np.floor(cx - hx))), min(w, int(np.ceil(cx + hx)) + 1)
    return HeartRegion(y0, y1, x0, x1, (float(cy), float(cx)), source)


def _robust_unit(volume: np.ndarray) -> np.ndarray:
    """A 3D frame scaled to its 1-99 percentile range, float32 in about [0, 1]."""
    v = np.asarray(volume, dtype=np.float32)
    lo, hi = np.percentile(v, [1.0, 99.0])
    return np.clip((v - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0)


def motion_map(frames: Sequence[np.ndarray] | np.ndarray, spacing_yx: tuple[float, float]):
    """Temporal standard deviation summed over slices and smoothed: ``(y, x)`` float32.

    ``frames`` is ``(t, z, y, x)`` (or a sequence of ``t >= 2`` equal-shape 3D frames,
    e.g. ED and ES). Each frame is scaled to its own 1-99 percentile range first, so a
    global intensity drift between frames does not count as motion. Smoothing: a
    Gaussian of 6 mm.
    """
    stack = np.stack([_robust_unit(f) for f in frames])
    if stack.ndim != 4 or stack.shape[0] < 2:
        raise ValueError("Motion needs at least two 3D frames of the same shape.")
    energy = stack.std(axis=0).sum(axis=0)
    sigma = [6.0 / max(float(s), 1e-3) for s in spacing_yx]
    return ndimage.gaussian_filter(energy, sigma).astype(np.float32)


def region_from_motion(
    frames: Sequence[np.ndarray] | np.ndarray,
    spacing_yx: tuple[float, float],
    half_mm: float = MOTION_HALF_MM,
) -> HeartRegion | None:
    """The box of ``2 * half_mm`` around the motion peak (:func:`motion_map`); None when
    nothing moves (identical frames: the same image given twice, a static series)."""
    energy = motion_map(frames, spacing_yx)
    if not np.isfinite(energy).all() or float(energy.max()) <= 1e-6:
        return None
    # centroid of the strongest 2 % of the map: stabler than the single arg-max
    top = energy >= np.percentile(energy, 98.0)
    cy, cx = ndimage.center_of_mass(np.where(top, energy, 0.0))
    hy, hx = (half_mm / max(float(s), 1e-3) for s in spacing_yx)
    box = _box(cy, cx, hy, hx, energy.shape, "motion")
    return replace(box, note=motion_doubt(energy, spacing_yx))


def motion_doubt(energy: np.ndarray, spacing_yx: tuple[float, float]) -> str:
    """Why a region centred on the motion map ``energy`` ``(y, x)`` may miss the heart, as
    a sentence ("" when the map has one clear peak): nothing stands out (a view without
    the heart, noise), or a second structure far from the first moves nearly as much."""
    top = energy >= np.percentile(energy, 98.0)
    contrast = float(energy[top].mean()) / max(float(np.median(energy)), 1e-9)
    if contrast < MIN_MOTION_CONTRAST:
        return (
            f"Nothing in the view moves like a heart (motion peak {contrast:.1f} x the "
            "median, a beating heart gives over 3): there may be no heart in it, and any "
            "structure segmented there is doubtful."
        )
    peaks, n = ndimage.label(energy >= SECOND_PEAK * float(energy.max()))
    if n < 2:
        return ""
    where = ndimage.maximum_position(energy, peaks, range(1, n + 1))
    height = ndimage.maximum(energy, peaks, range(1, n + 1))
    order = np.argsort(height)[::-1]
    first, second = (np.asarray(where[i], float) for i in order[:2])
    mm = float(np.hypot(*((first - second) * np.asarray(spacing_yx, float))))
    if mm <= SECOND_PEAK_MM:
        return ""
    return (
        f"Two structures {mm:.0f} mm apart move like a heart: the heart region may be on "
        "the wrong one; check the segmentation (painting one slice of the heart avoids "
        "this)."
    )


def region_from_annotation(
    labels: np.ndarray,
    spacing_yx: tuple[float, float],
    margin_mm: float = ANNOTATION_MARGIN_MM,
    min_half_mm: float = 50.0,
) -> HeartRegion | None:
    """The painted foreground's in-plane bounding box plus a margin; None if nothing painted.

    ``labels`` is ``(z, y, x)`` or ``(t, z, y, x)``; every non-zero voxel counts. The box
    is at least ``2 * min_half_mm`` wide, because painted slices (mid-ventricle) can be
    smaller than the basal slices.
    """
    fg = np.asarray(labels) > 0
    if not fg.any():
        return None
    plane = fg.reshape(-1, *fg.shape[-2:]).any(axis=0)
    ys, xs = np.nonzero(plane)
    cy, cx = (ys.min() + ys.max()) / 2.0, (xs.min() + xs.max()) / 2.0
    sy, sx = (max(float(s), 1e-3) for s in spacing_yx)
    hy = max((ys.max() - ys.min()) / 2.0 + margin_mm / sy, min_half_mm / sy)
    hx = max((xs.max() - xs.min()) / 2.0 + margin_mm / sx, min_half_mm / sx)
    return _box(cy, cx, hy, hx, plane.shape, "annotation")


def locate_heart(
    image: np.ndarray,
    spacing: tuple[float, ...],
    annotation: np.ndarray | None = None,
    other_frames: Sequence[np.ndarray] = (),
) -> HeartRegion | None:
    """The best region the inputs allow, or None when nothing localises the heart.

    ``image`` is ``(z, y, x)`` or a cine ``(t, z, y, x)``; ``spacing`` has the same
    order. Painted foreground (``annotation``, same shape as ``image`` or any array whose
    last two axes match) wins; otherwise the motion across the cine's frames, or between
    ``image`` and ``other_frames`` (other 3D phases of the same stack, e.g. ES for ED).
    """
    image = np.asarray(image)
    spacing_yx = (float(spacing[-2]), float(spacing[-1]))
    if annotation is not None:
        region = region_from_annotation(annotation, spacing_yx)
        if region is not None:
            return region
    if image.ndim == 4 and image.shape[0] >= 2:
        return region_from_motion(image, spacing_yx)
    frames = [image] + [np.asarray(f) for f in other_frames if np.shape(f) == image.shape]
    if image.ndim == 3 and len(frames) >= 2:
        return region_from_motion(frames, spacing_yx)
    return None
