"""npe2 writers: save a labels or image layer as NIfTI with its source header.

The geometry comes from the layer's ``metadata`` (put there by the reader, or copied from
the image onto a labels layer). A layer without NIfTI metadata is written with an affine
``diag(scale)`` built from the layer's ``scale`` (sform/qform code 1) rather than an
identity. A path without ``.nii`` / ``.nii.gz`` gets ``.nii.gz`` appended. A labels layer's
background-only slices (``metadata["pix2rep_background_slices"]``) go to the
``.slices.json`` sidecar beside the file (docs/annotations.md); without any, a sidecar
left there by an earlier save is removed, and so is the layer's autosaved copy in the
recovery folder (:func:`napari_pix2rep.annotate.recovery.forget_saved`): the work is saved now.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_pix2rep.annotate.annotations import write_background_slices
from napari_pix2rep.annotate.loop import background_of
from napari_pix2rep.annotate.recovery import forget_saved
from napari_pix2rep.io.datafiles import is_nifti_path
from napari_pix2rep.io.layer_meta import source_path, volume_from_layer
from napari_pix2rep.io.nifti_write import write_nifti


def _target(path: str) -> str:
    return path if is_nifti_path(path) else f"{path}.nii.gz"


def _write(path: str, data: Any, meta: dict[str, Any], kind: str) -> list[str]:
    scale = meta.get("scale")
    spacing = tuple(float(s) for s in scale) if scale is not None else None
    vol = volume_from_layer(data, meta.get("metadata") or {}, spacing=spacing)
    return [write_nifti(_target(path), vol.data, vol, kind=kind)]


def write_labels(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Save a labels layer (uint8/uint16, no scaling) with its image's NIfTI header, and
    its background-only slices in the sidecar."""
    (written,) = _write(path, data, meta, "labels")
    shape = tuple(int(n) for n in np.shape(data))
    flat = background_of(meta.get("metadata"), int(np.prod(shape[:-2])))
    write_background_slices(written, flat, shape)
    forget_saved(meta.get("metadata"), source_path(meta.get("metadata")))
    return [written]


def write_image(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Save an image layer with its NIfTI header (source dtype when lossless, else float32)."""
    return _write(path, data, meta, "image")
