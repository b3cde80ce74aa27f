"""Preprocessing that the network sees: intensity normalisation, in-plane resampling, padding.

Everything here looks at the image alone (never at a mask), so the same code serves
pretraining, training from annotations and prediction.

Geometry: a slice of native size ``(H, W)`` and in-plane spacing ``(sy, sx)`` is
resampled to ``(round(H * sy / s), round(W * sx / s))`` for the target spacing ``s`` with
``align_corners=False`` bilinear interpolation, i.e. the field of view is kept exactly and
pixel centres map affinely. :func:`to_native` applies the inverse map (same convention,
sizes swapped), so maps predicted on the model grid land on the native grid exactly.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.nn import functional as F


@dataclass(frozen=True)
class PreprocessConfig:
    """How an image is prepared for the network; stored in every model file.

    ``target_spacing`` is the in-plane spacing in mm the network works at (None keeps
    the native grid). Intensities are clipped to the ``clip`` percentiles of each 3D
    volume (each frame of a cine separately) and then standardised. ``context``: the
    network sees each slice with its ``context`` neighbours on either side as channels
    (``2 * context + 1`` input channels, the slice itself in the middle; the first and last
    slices repeat themselves where a neighbour is missing), so a 2D network knows where
    along the stack it is (0: the slice alone).
    """

    target_spacing: float | None = 1.5
    clip_low: float = 0.5
    clip_high: float = 99.5
    context: int = 0

    def __post_init__(self) -> None:
        # model files are untrusted: refuse text, NaN, zero and absurd values here, once
        lo, hi = TARGET_SPACING_RANGE
        s = self.target_spacing
        if s is not None and not (_is_real(s) and lo <= s <= hi):
            raise ValueError(f"target_spacing must be None or from {lo} to {hi} mm, not {s!r}.")
        low, high = self.clip_low, self.clip_high
        if not (_is_real(low) and _is_real(high) and 0 <= low < high <= 100):
            raise ValueError(
                f"The clip percentiles must be numbers with 0 <= low < high <= 100, "
                f"not {low!r} and {high!r}."
            )
        if type(self.context) is not int or not 0 <= self.context <= MAX_CONTEXT:
            raise ValueError(
                f"context must be a whole number from 0 to {MAX_CONTEXT}, not {self.context!r}."
            )

    @property
    def channels(self) -> int:
        """Input channels of the network: the slice and its neighbours."""
        return 2 * self.context + 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PreprocessConfig:
        """The settings of ``d`` (a model file's ``preprocess`` block); ValueError if bad."""
        if not isinstance(d, dict):
            raise ValueError(f"the preprocessing settings are a {type(d).__name__}, not a dict.")
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown preprocessing settings {unknown}.")
        return cls(**d)


#: Most neighbour slices on either side a network may see (:attr:`PreprocessConfig.context`).
MAX_CONTEXT = 3
#: Allowed model-grid spacing in mm.
TARGET_SPACING_RANGE = (0.05, 20.0)
#: Allowed size (pixels per side) of a slice on the model grid: a header whose spacing is
#: off by a unit (a metre taken for a millimetre) would otherwise ask for terabytes, or
#: shrink the slice to a few pixels and give an empty mask.
MODEL_SIDE_RANGE = (8, 2048)


def _is_real(value: object) -> bool:
    """A finite int or float (not a bool, a string or NaN)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def normalize_intensity(volume: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Clip a 3D volume ``(z, y, x)`` to its [low, high] percentiles and standardise it.

    Returns float32 with mean 0 and standard deviation 1 (a constant volume gives zeros).
    """
    v = np.asarray(volume, dtype=np.float32)
    if not np.isfinite(v).all():
        raise ValueError("The image has NaN or infinite values; it cannot be normalised.")
    lo, hi = (float(q) for q in np.percentile(v, [low, high]))
    v = np.clip(v, lo, hi)
    std = float(v.std())
    out = (v - float(v.mean())) / std if std > 0 else np.zeros_like(v)
    return out.astype(np.float32, copy=False)


def model_size(native: tuple[int, int], spacing: tuple[float, float], cfg: PreprocessConfig):
    """The in-plane size ``(H', W')`` of a native ``(H, W)`` slice on the model grid.

    Raises ValueError when a side leaves :data:`MODEL_SIDE_RANGE` (and the native size
    is inside it): a wrong voxel size or unit in the header; or the spacing is not positive.
    """
    if cfg.target_spacing is None:
        return tuple(native)
    if not all(_is_real(float(s)) and s > 0 for s in spacing):
        raise ValueError(f"The in-plane voxel size {tuple(spacing)} mm must be positive.")
    size = tuple(max(1, int(round(n * s / cfg.target_spacing))) for n, s in zip(native, spacing))
    lo, hi = MODEL_SIDE_RANGE
    if not all(min(lo, n) <= m <= max(hi, n) for n, m in zip(native, size)):
        grid = " x ".join(f"{float(s):g}" for s in spacing)
        raise ValueError(
            f"A {native[0]}x{native[1]} slice of {grid} mm voxels would be {size[0]}x{size[1]} "
            f"pixels on the model's {cfg.target_spacing:g} mm grid (allowed {lo} to {hi} per "
            "side): check the voxel size and unit in the file's header."
        )
    return size


def resample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resample ``(N, C, H, W)`` to ``(N, C, *size)`` (bilinear, align_corners=False).

    Downsampling is antialiased; the map between pixel centres is exactly affine.
    """
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    down = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=down)


def centred_pads(ph: int, pw: int) -> tuple[int, int, int, int]:
    """``(left, right, top, bottom)`` that add ``ph`` rows and ``pw`` columns, centred
    (the odd one at the bottom / right), in ``F.pad`` order."""
    return pw // 2, pw - pw // 2, ph // 2, ph - ph // 2


def pad_to_multiple(
    x: torch.Tensor, stride: int
) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Pad ``(N, C, H, W)`` (edge values, centred) so H and W are multiples of ``stride``.

    Returns the padded tensor and the pads ``(left, right, top, bottom)`` to undo it.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % stride, (-w) % stride
    pads = centred_pads(ph, pw)
    if ph or pw:
        x = F.pad(x, pads, mode="replicate")
    return x, pads


def unpad(x: torch.Tensor, pads: tuple[int, int, int, int]) -> torch.Tensor:
    """Undo :func:`pad_to_multiple` on ``(N, C, H, W)``."""
    left, right, top, bottom = pads
    return x[..., top : x.shape[-2] - bottom, left : x.shape[-1] - right]


@dataclass
class PreparedSlices:
    """Slices of one volume ready for the network.

    ``x``: ``(S, C, H', W')`` float32 on the model grid, padded to the stride (S = all
    slices of all frames, in ``data.reshape(-1, H, W)`` order; C = 1, or the slice with
    its neighbours in the same frame, :attr:`PreprocessConfig.channels`). ``native_shape``: the
    array shape of the source volume; ``size``: the unpadded model-grid size.
    """

    x: torch.Tensor
    native_shape: tuple[int, ...]
    size: tuple[int, int]
    pads: tuple[int, int, int, int]


def prepare_volume(
    data: np.ndarray,
    spacing: tuple[float, ...],
    cfg: PreprocessConfig,
    stride: int = 1,
    crop: tuple[slice, slice] | None = None,
) -> PreparedSlices:
    """Normalise (per 3D volume), resample and pad a ``(z, y, x)`` or ``(t, z, y, x)`` image.

    ``crop`` (two slices over ``(y, x)``) keeps an in-plane window after normalisation:
    the intensities are those of the whole volume, only the window goes to the network,
    and ``native_shape`` is the cropped shape.
    """
    data = np.asarray(data)
    if data.ndim not in (3, 4):
        raise ValueError(f"Expected a 3D or 4D image, got {data.ndim} dimensions.")
    frames = data[None] if data.ndim == 3 else data
    norm = np.stack([normalize_intensity(f, cfg.clip_low, cfg.clip_high) for f in frames])
    if crop is not None:
        norm = np.ascontiguousarray(norm[..., crop[0], crop[1]])
    shape = (*data.shape[:-2], *norm.shape[-2:])
    if cfg.context:
        n_z, c = norm.shape[1], cfg.context
        near = np.clip(np.arange(n_z)[:, None] + np.arange(-c, c + 1)[None], 0, n_z - 1)
        norm = norm[:, near]  # (frames, z, 2c + 1, h, w): each slice with its neighbours
    x = torch.from_numpy(np.ascontiguousarray(norm).reshape(-1, cfg.channels, *shape[-2:]))
    size = model_size(shape[-2:], tuple(spacing[-2:]), cfg)
    x = resample(x, size)
    x, pads = pad_to_multiple(x, stride)
    return PreparedSlices(x.contiguous(), shape, size, pads)


def to_native(maps: torch.Tensor, prepared: PreparedSlices) -> torch.Tensor:
    """Map ``(S, C, H'p, W'p)`` network outputs back to the native ``(S, C, H, W)`` grid."""
    return resample(unpad(maps, prepared.pads), tuple(prepared.native_shape[-2:]))
