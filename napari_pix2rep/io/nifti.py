"""NIfTI input that keeps the header: ``Volume`` and ``read_nifti``.

Arrays are in napari's display order, 3D ``(z, y, x)`` or 4D ``(t, z, y, x)``; nibabel's
``(x, y, z[, t])`` is reversed on read and restored on write. ``spacing`` follows the array
axes: millimetres for space (converted from the header's spatial unit; "unknown" is
taken as mm, an undefined unit code or an implausible size in metres or microns is
refused) and, for a 4D file, the frame time in seconds when the header gives a time
unit, else 1.0. The source header is carried unchanged (as a copy), so a file written with
:func:`write_nifti` has the same affine, sform/qform and their codes, pixdim, units, dim_info
and description as its source. The header is never rebuilt from the affine: many scanners'
files (ACDC among them) have a unit-scaled sform while pixdim holds the spacing.

Written dtypes: labels are saved as uint8 (uint16 when a label exceeds 255) without
intensity scaling; images keep the source file's dtype when the data converts to it
without loss (e.g. an int16 scan read and saved unchanged), otherwise float32.

Untrusted headers (:mod:`.nifti_limits`): a declared grid above ``$NAPARI_PIX2REP_MAX_VOXELS``
(default 2**29 voxels, 2 GiB of float32) is refused before anything is allocated, and the
"is it truncated?" check inflates a gzip in chunks only as far as the header declares.

This module imports neither torch nor Qt.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.nifti1 import Nifti1Extension

from napari_pix2rep.io.datafiles import LABEL_NAME as _LABEL_NAME
from napari_pix2rep.io.datafiles import nifti_stem
from napari_pix2rep.io.errors import error_message
from napari_pix2rep.io.nifti_limits import (
    check_declared_size,
    space_unit_to_mm,
    time_unit_to_s,
    truncation,
)

__all__ = [
    "NiftiError",
    "Volume",
    "copy_header",
    "header_from_spacing",
    "is_label_file",
    "label_dtype",
    "read_nifti",
    "spacing_from_header",
]

#: Maximum number of distinct values for an integer file to be taken as a label map.
MAX_LABEL_VALUES = 32


class NiftiError(ValueError):
    """A NIfTI file cannot be read or written; the message is one sentence naming the file."""


@dataclass
class Volume:
    """A NIfTI volume in display order with the geometry needed to write it back.

    ``data`` is ``(z, y, x)`` or ``(t, z, y, x)``; ``spacing`` has one entry per axis in the
    same order; ``header`` is a copy of the source header; ``affine`` its 4x4 affine.
    """

    data: np.ndarray
    spacing: tuple[float, ...]
    header: nib.Nifti1Header
    affine: np.ndarray
    path: str | None = None

    @property
    def ndim(self) -> int:
        """Number of array axes (3 or 4)."""
        return int(np.ndim(self.data))

    @property
    def shape(self) -> tuple[int, ...]:
        """Array shape in display order."""
        return tuple(int(s) for s in np.shape(self.data))

    @property
    def is_4d(self) -> bool:
        """True for a cine volume ``(t, z, y, x)``."""
        return self.ndim == 4

    @property
    def n_frames(self) -> int:
        """Number of time frames (1 for a 3D volume)."""
        return self.shape[0] if self.is_4d else 1

    @property
    def n_slices(self) -> int:
        """Number of slices along z."""
        return self.shape[-3]

    @property
    def inplane_spacing(self) -> tuple[float, float]:
        """In-plane spacing ``(sy, sx)`` in mm."""
        return (float(self.spacing[-2]), float(self.spacing[-1]))

    @property
    def slice_spacing(self) -> float:
        """Spacing along z in mm."""
        return float(self.spacing[-3])

    @property
    def is_labels(self) -> bool:
        """True when the data is an integer label map."""
        return bool(np.issubdtype(np.asarray(self.data).dtype, np.integer))

    @property
    def name(self) -> str:
        """File name without the NIfTI suffix ("volume" when there is no path)."""
        return nifti_stem(self.path) if self.path else "volume"

    def with_data(self, data: np.ndarray, path: str | None = None) -> Volume:
        """A new ``Volume`` with this geometry and other data of the same shape."""
        data = np.asarray(data)
        if data.shape != self.shape:
            raise ValueError(
                f"Data shape {data.shape} does not match the volume shape {self.shape}."
            )
        return Volume(data, self.spacing, self.header.copy(), self.affine.copy(), path)


# --------------------------------------------------------------------------- helpers


#: An exception as a clause inside a NIfTI error's sentence.
_clause = partial(error_message, clause=True)


def spacing_from_header(
    header: nib.Nifti1Header, ndim: int, name: str = "The image"
) -> tuple[float, ...]:
    """Spacing in display order from pixdim and xyzt_units (non-positive zooms become 1.0).

    Raises :class:`NiftiError` for an undefined spatial unit or an implausible voxel size
    once converted from metres or microns (see :func:`nifti_limits.space_unit_to_mm`).
    """
    zooms = [float(z) for z in header.get_zooms()[:ndim]]
    zooms += [1.0] * (ndim - len(zooms))
    units = int(header["xyzt_units"])
    try:
        space_factor = space_unit_to_mm(name, units, zooms[:3])
    except ValueError as exc:
        raise NiftiError(str(exc)) from None
    time_factor = time_unit_to_s(units)
    spacing = []
    for axis, zoom in enumerate(zooms):
        zoom = abs(zoom)
        if not np.isfinite(zoom) or zoom == 0:
            zoom = 1.0
        elif axis < 3:
            zoom *= space_factor
        elif time_factor is not None:
            zoom *= time_factor
        else:
            zoom = 1.0
        # shortest decimal of the float32 pixdim: 1.78571, not 1.7857099771499634
        spacing.append(float(np.format_float_positional(np.float32(zoom), unique=True)))
    return tuple(reversed(spacing))


def label_dtype(data: np.ndarray) -> np.dtype | None:
    """uint8 / uint16 when ``data`` holds non-negative integers that fit, else None."""
    data = np.asarray(data)
    if data.size == 0:
        return np.dtype(np.uint8)
    if data.dtype == bool:
        return np.dtype(np.uint8)
    if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        return None
    if np.issubdtype(data.dtype, np.floating):
        if not np.isfinite(data).all() or not np.array_equal(data, np.round(data)):
            return None
    lo, hi = data.min(), data.max()
    if lo < 0 or hi > np.iinfo(np.uint16).max:
        return None
    return np.dtype(np.uint8) if hi <= np.iinfo(np.uint8).max else np.dtype(np.uint16)


def _distinct_count(data: np.ndarray) -> int:
    """Number of distinct values of integer ``data``."""
    lo, hi = int(data.min()), int(data.max())
    if hi - lo <= 1 << 20:
        return int(np.count_nonzero(np.bincount(data.ravel().astype(np.int64) - lo)))
    return len(np.unique(data))


def is_label_file(path: str | os.PathLike[str] | None, vol: Volume | np.ndarray) -> bool:
    """True when a file holds a segmentation rather than an image.

    Either the name marks one (``_gt``, ``_seg``, ``_label``, ``_labels`` or ``_mask`` just
    before ``.nii``/``.nii.gz``, any case) and the values are non-negative integers (stored
    as integers or as integral floats), or the data has an integer dtype with at most
    32 distinct non-negative values.
    """
    data = np.asarray(vol.data if isinstance(vol, Volume) else vol)
    if data.size == 0:
        return False
    if path is not None and _LABEL_NAME.search(Path(path).name):
        return label_dtype(data) is not None
    if not np.issubdtype(data.dtype, np.integer) or data.min() < 0:
        return False
    return _distinct_count(data) <= MAX_LABEL_VALUES


# --------------------------------------------------------------------------- reading


def _load(p: Path, max_voxels: int | None = None) -> nib.Nifti1Image:
    """The NIfTI image object of ``p`` (header read, voxel data not yet); NiftiError."""
    name = p.name
    if not p.exists():
        raise NiftiError(f"{p} does not exist.")
    if p.is_dir():
        raise NiftiError(f"{name} is a folder, not a NIfTI file.")
    if p.stat().st_size == 0:
        raise NiftiError(f"{name} is empty (0 bytes).")
    try:
        img = nib.load(str(p))
    except ImageFileError as exc:
        why = truncation(p, max_voxels)
        if why is not None:
            raise NiftiError(f"{name} is truncated or corrupt: {why}.") from exc
        raise NiftiError(f"{name} is not a NIfTI file ({_clause(exc)}).") from exc
    except Exception as exc:  # EOFError, zlib.error, OSError, HeaderDataError, ...
        raise NiftiError(f"{name} is truncated or corrupt: {_clause(exc)}.") from exc
    if not isinstance(img, nib.Nifti1Image):  # Nifti2Image is a subclass
        raise NiftiError(f"{name} is a {type(img).__name__}, not a single-file NIfTI-1/2 image.")
    return img


def _geometry(img: nib.Nifti1Image, name: str) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """On-disk shape (a trailing single frame dropped) and display-order spacing."""
    shape = tuple(int(s) for s in img.shape)
    while len(shape) > 3 and shape[-1] == 1:  # e.g. (x, y, z, 1): a 4D file with one frame
        shape = shape[:-1]
    if len(shape) not in (3, 4):
        raise NiftiError(
            f"{name} has {len(shape)} dimensions {tuple(img.shape)}; "
            "only 3D (x, y, z) and 4D (x, y, z, t) volumes are supported."
        )
    if 0 in shape:
        raise NiftiError(f"{name} has an empty dimension {tuple(img.shape)}.")
    return shape, spacing_from_header(img.header, len(shape), name)


def nifti_grid(
    path: str | os.PathLike[str],
) -> tuple[tuple[int, ...], tuple[float, ...], np.ndarray]:
    """Shape and spacing in display order (as :func:`read_nifti` gives them) and the affine,
    from the header alone (no voxel data read). Raises :class:`NiftiError`."""
    p = Path(path)
    img = _load(p)
    shape, spacing = _geometry(img, p.name)
    return tuple(reversed(shape)), spacing, np.array(img.affine, dtype=np.float64)


def read_nifti(
    path: str | os.PathLike[str],
    *,
    kind: Literal["auto", "image", "labels"] = "auto",
    max_voxels: int | None = None,
) -> Volume:
    """Read a 3D or 4D ``.nii`` / ``.nii.gz`` file into a :class:`Volume` (display order).

    ``kind="image"`` gives float32 data with the header's intensity scaling applied;
    ``kind="labels"`` gives the exact integer values (error if they are not non-negative
    integers or hold more than :data:`MAX_LABEL_VALUES` distinct values, as an image
    would); ``"auto"`` picks labels when :func:`is_label_file` says so. A 4D file with
    a single frame is returned as 3D. A header declaring more than ``max_voxels`` voxels
    (default ``$NAPARI_PIX2REP_MAX_VOXELS`` or 2**29, 2 GiB of float32) is refused before
    anything is allocated. Every failure raises :class:`NiftiError`.
    """
    if kind not in ("auto", "image", "labels"):
        raise ValueError(f"kind must be 'auto', 'image' or 'labels', not {kind!r}.")
    p = Path(path)
    name = p.name
    img = _load(p, max_voxels)
    shape, spacing = _geometry(img, name)

    header = img.header
    on_disk = header.get_data_dtype()
    proxy = img.dataobj
    unscaled = (
        float(getattr(proxy, "slope", 1.0)) == 1.0 and float(getattr(proxy, "inter", 0.0)) == 0.0
    )
    raw_ints = kind != "image" and np.issubdtype(on_disk, np.integer) and unscaled
    try:
        itemsize = on_disk.itemsize if raw_ints and kind == "labels" else 4  # else float32
        check_declared_size(name, shape, itemsize, max_voxels)
    except ValueError as exc:
        raise NiftiError(str(exc)) from None
    try:
        data = np.asanyarray(proxy) if raw_ints else img.get_fdata(dtype=np.float32)
        data = np.asarray(data).reshape(shape)
    except Exception as exc:
        raise NiftiError(
            f"{name} is truncated or corrupt: its voxel data cannot be read ({_clause(exc)})."
        ) from exc
    data = np.ascontiguousarray(data.transpose(tuple(reversed(range(data.ndim)))))
    _check_finite(name, data)
    vol = Volume(
        data=data,
        spacing=spacing,
        header=copy_header(header),
        affine=np.array(img.affine, dtype=np.float64),
        path=str(p),
    )
    if kind == "labels" or (kind == "auto" and is_label_file(p, vol)):
        vol.data = _as_labels(name, data, count_values=kind == "labels")
    elif not np.issubdtype(data.dtype, np.floating):
        vol.data = data.astype(np.float32)
    return vol


def _check_finite(name: str, data: np.ndarray) -> None:
    """Refuse NaN and infinite voxel values, counting each."""
    if not np.issubdtype(data.dtype, np.floating):
        return
    finite = np.isfinite(data)
    if not finite.all():
        n_nan = int(np.isnan(data).sum())
        n_inf = int(data.size - finite.sum() - n_nan)
        raise NiftiError(
            f"{name} contains {n_nan} NaN and {n_inf} infinite voxel values; "
            "only finite values are supported."
        )


def _as_labels(name: str, data: np.ndarray, count_values: bool) -> np.ndarray:
    """``data`` as a label map (non-negative integers); with ``count_values``, also refuse
    more than :data:`MAX_LABEL_VALUES` distinct values (an image, not labels)."""
    if not np.issubdtype(data.dtype, np.integer):
        dtype = label_dtype(data)
        if dtype is None:
            raise NiftiError(
                f"{name} looks like an image, not a label map: its values are not "
                "non-negative integers up to 65535."
            )
        data = data.astype(dtype)
    elif data.min() < 0:
        raise NiftiError(f"{name} does not hold a label map: it has negative values.")
    n = _distinct_count(data) if count_values else 0
    if n > MAX_LABEL_VALUES:
        raise NiftiError(
            f"{name} looks like an image, not a label map ({n} distinct values; a label "
            f"map has at most {MAX_LABEL_VALUES})."
        )
    return data


def copy_header(header: nib.Nifti1Header) -> nib.Nifti1Header:
    """A deep copy of a NIfTI header, extensions included."""
    out = header.__class__(header.binaryblock, header.endianness, check=False)
    for ext in header.extensions:
        out.extensions.append(Nifti1Extension(ext.get_code(), ext.get_content()))
    return out


#: The NIfTI extension (a JSON comment, ecode 6) naming a label map's classes.
CLASSES_FORMAT = "napari-pix2rep/classes"
_COMMENT = 6


def label_classes(header: nib.Nifti1Header) -> tuple[str, ...] | None:
    """The class names a label map's header stores (label ``i`` is name ``i``, written by
    :func:`~.nifti_write.write_nifti` with ``classes``), or None when it stores none."""
    for ext in header.extensions:
        if ext.get_code() != _COMMENT:
            continue
        try:
            doc = json.loads(bytes(ext.get_content()).rstrip(b"\0").decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            continue
        if isinstance(doc, dict) and doc.get("format") == CLASSES_FORMAT:
            names = doc.get("classes")
            if isinstance(names, list) and len(names) >= 2:
                if all(isinstance(n, str) and n.strip() for n in names):
                    return tuple(names)
    return None


def set_label_classes(header: nib.Nifti1Header, classes: Sequence[str] | None) -> None:
    """Store ``classes`` in ``header`` (replacing a previous list; None removes it)."""
    keep = [e for e in header.extensions if not _is_classes(e)]
    header.extensions.clear()
    header.extensions.extend(keep)
    if classes is not None:
        doc = json.dumps({"format": CLASSES_FORMAT, "classes": [str(c) for c in classes]})
        header.extensions.append(Nifti1Extension(_COMMENT, doc.encode("utf-8")))


def _is_classes(ext: Nifti1Extension) -> bool:
    return ext.get_code() == _COMMENT and CLASSES_FORMAT.encode() in bytes(ext.get_content())


def header_from_spacing(
    shape: tuple[int, ...], spacing: tuple[float, ...]
) -> tuple[nib.Nifti1Header, np.ndarray]:
    """A fresh header for display-order ``shape`` with affine ``diag(spacing)``, codes 1."""
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != len(shape) or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise NiftiError(
            f"Spacing {spacing} must hold one positive number per axis of shape {shape}."
        )
    zooms = tuple(reversed(spacing))
    header = nib.Nifti1Header()
    header.set_data_shape(tuple(reversed(shape)))
    header.set_data_dtype(np.float32)
    affine = np.diag([*zooms[:3], 1.0])
    header.set_sform(affine, code=1)
    header.set_qform(affine, code=1)
    header.set_zooms(zooms)
    header.set_xyzt_units("mm", "unknown")
    return header, affine
