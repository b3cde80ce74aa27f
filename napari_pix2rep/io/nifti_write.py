"""Write display-order data as NIfTI with a source image's header: ``write_nifti``.

Labels are saved as uint8 (uint16 when a label exceeds 255) without intensity scaling;
images keep the source file's dtype when the data converts to it without loss (e.g. an
int16 scan read and saved unchanged), otherwise float32. Every other header field is
the source's (:class:`napari_pix2rep.io.nifti.Volume` or a layer's metadata,
:mod:`napari_pix2rep.io.layer_meta`). Written to a temporary file beside the target, then
renamed (:func:`napari_pix2rep.io.outputs.atomic_write`), so a failure leaves the previous
file intact.

This module imports neither torch nor Qt.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import nibabel as nib
import numpy as np

from napari_pix2rep.io.datafiles import is_nifti_path, nifti_suffix
from napari_pix2rep.io.layer_meta import nifti_meta, volume_from_layer
from napari_pix2rep.io.nifti import (
    NiftiError,
    Volume,
    copy_header,
    header_from_spacing,
    label_dtype,
    set_label_classes,
)
from napari_pix2rep.io.outputs import OutputError, atomic_write, write_reason


def _image_dtype(data: np.ndarray, source: np.dtype) -> np.dtype:
    """The source dtype when ``data`` converts to it losslessly, else float32."""
    source = np.dtype(source)
    if np.issubdtype(source, np.integer) and source.itemsize <= 4:
        info = np.iinfo(source)
        if np.issubdtype(data.dtype, np.integer) or data.dtype == bool:
            ok = data.size == 0 or (data.min() >= info.min and data.max() <= info.max)
        else:
            ok = data.size == 0 or (
                data.min() >= info.min
                and data.max() <= info.max
                and np.array_equal(data, np.round(data))
            )
        return source if ok else np.dtype(np.float32)
    if source in (np.dtype(np.float32), np.dtype(np.float64)):
        if data.dtype == source or (
            source == np.float64 and np.issubdtype(data.dtype, np.floating)
        ):
            return source
    return np.dtype(np.float32)


def _source_header(
    name: str,
    data: np.ndarray,
    like: Volume | Mapping[str, Any] | None,
    spacing: tuple[float, ...] | None,
) -> nib.Nifti1Header:
    """A copy of the header to write ``data`` with: ``like``'s, else one from ``spacing``."""
    if isinstance(like, Volume):
        return copy_header(like.header)
    if like is not None and nifti_meta(like) is not None:
        return volume_from_layer(data, like).header
    if spacing is not None:
        return header_from_spacing(data.shape, tuple(spacing))[0]
    raise NiftiError(
        f"Cannot write {name}: there is no source NIfTI header to copy and no voxel "
        "spacing was given."
    )


def _file_dtype(
    name: str,
    data: np.ndarray,
    header: nib.Nifti1Header,
    kind: str,
    classes: Sequence[str] | None,
) -> np.dtype:
    """The dtype ``data`` is stored as; checks the values and, for labels, clears
    cal_min/cal_max and stores ``classes`` in ``header``."""
    if kind == "labels":
        dtype = label_dtype(data)
        if dtype is None:
            raise NiftiError(
                f"Cannot write {name}: labels must be non-negative integers up to 65535 "
                f"(got values from {data.min()} to {data.max()}, dtype {data.dtype})."
            )
        header["cal_min"] = 0
        header["cal_max"] = 0
        if classes is not None:
            set_label_classes(header, classes)
        return dtype
    if np.iscomplexobj(data) or not np.issubdtype(data.dtype, np.number):
        raise NiftiError(f"Cannot write {name}: image data must be real numbers.")
    if np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
        raise NiftiError(f"Cannot write {name}: the image contains NaN or infinite values.")
    return _image_dtype(data, header.get_data_dtype())


def write_nifti(
    path: str | os.PathLike[str],
    data: Any,
    like: Volume | Mapping[str, Any] | None = None,
    *,
    kind: Literal["labels", "image"] = "labels",
    spacing: tuple[float, ...] | None = None,
    classes: Sequence[str] | None = None,
) -> str:
    """Write display-order ``data`` to ``path`` (``.nii`` or ``.nii.gz``) with ``like``'s header.

    ``like`` is the source :class:`Volume` or a napari layer's ``metadata`` dict. Every
    header field is copied from it; only the data type, intensity scaling (cleared) and,
    for labels, cal_min/cal_max (cleared) change. Labels are saved as uint8 (uint16 above
    255) and must be non-negative integers; images keep the source dtype when lossless,
    else float32. Without a source header an explicit ``spacing`` gives an affine
    ``diag(spacing)`` with sform/qform code 1. ``classes`` (labels only: label ``i`` is
    name ``i``) are stored in the header (:func:`~.nifti.label_classes` reads them, so
    ``pix2rep measure`` knows which label is the LV). The file is written to a temporary
    file in the same folder and renamed onto ``path``, so a failure leaves any previous
    file intact.
    Returns the written path.
    """
    if kind not in ("labels", "image"):
        raise ValueError(f"kind must be 'labels' or 'image', not {kind!r}.")
    p = Path(path)
    name = p.name
    if not is_nifti_path(p):
        raise NiftiError(f"Cannot write {name}: the file name must end with .nii or .nii.gz.")
    if not p.parent.is_dir():
        raise NiftiError(f"Cannot write {name}: the folder {p.parent} does not exist.")
    data = np.asarray(data)
    if data.ndim not in (3, 4):
        raise NiftiError(
            f"Cannot write {name}: only 3D (z, y, x) and 4D (t, z, y, x) data are supported, "
            f"not shape {data.shape}."
        )

    header = _source_header(name, data, like, spacing)
    source_shape = tuple(int(s) for s in header.get_data_shape())
    file_shape = tuple(reversed(data.shape))
    extra = source_shape[len(file_shape) :]
    if source_shape[: len(file_shape)] != file_shape or any(s != 1 for s in extra):
        raise NiftiError(
            f"Cannot write {name}: the data shape {data.shape} does not match the source "
            f"image shape {tuple(reversed(source_shape[: max(3, len(file_shape))]))} "
            "(display order)."
        )
    file_data = data.transpose(tuple(reversed(range(data.ndim)))).reshape(source_shape)
    dtype = _file_dtype(name, data, header, kind, classes)
    header.set_data_dtype(dtype)
    header.set_slope_inter(None, None)
    file_data = np.ascontiguousarray(file_data.astype(dtype, copy=False))

    image_class = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
    # affine=None: nibabel keeps the header's sform/qform/pixdim exactly as they are.
    img = image_class(file_data, None, header=header)

    try:
        atomic_write(p, lambda tmp: nib.save(img, str(tmp)), nifti_suffix(p), by_name=True)
    except OutputError as exc:
        cause = exc.__cause__ or exc
        raise NiftiError(f"Cannot write {name}: {write_reason(cause, p.parent)}.") from cause
    return str(p)
