"""npe2 reader: open NIfTI files and DICOM series as napari layers that keep the geometry.

``.nii`` / ``.nii.gz`` images become ``image`` layers (float32, grey, 0.5-99.5 percentile
contrast) and label maps (see :func:`napari_pix2rep.io.nifti.is_label_file`) ``labels``
layers with integer data. A DICOM series (a folder, or one ``.dcm`` / ``.ima`` file of it)
becomes one ``image`` layer, 4D ``(t, z, y, x)`` for a cine, named after the patient and
series. Each layer's ``scale`` is the voxel spacing and its ``metadata`` carries a NIfTI
header (for DICOM: the converted affine), so it can be saved back with the same geometry.
A label file's ``.slices.json`` sidecar (background-only slices, docs/annotations.md)
goes into ``metadata["pix2rep_background_slices"]``; a sidecar that cannot be used is
ignored with a warning (napari shows it), the labels still open.
Deciding on a folder opens only a few of its files. No torch import.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from napari_pix2rep.annotate.annotations import AnnotationError, read_background_slices
from napari_pix2rep.annotate.loop import BACKGROUND_KEY
from napari_pix2rep.core.classes import BASE_COLORS
from napari_pix2rep.io.datafiles import is_nifti_path, nifti_stem
from napari_pix2rep.io.dicom import read_dicom
from napari_pix2rep.io.images import is_dicom_source, read_image
from napari_pix2rep.io.layer_meta import volume_metadata
from napari_pix2rep.io.nifti import Volume

LayerData = tuple[Any, dict[str, Any], str]
PathLike = str | os.PathLike[str]


def get_reader(path: PathLike | Sequence[PathLike]) -> Callable[..., list[LayerData]] | None:
    """Return a reader when every path is a NIfTI file or a DICOM series (folder or file)."""
    paths = [path] if isinstance(path, str | os.PathLike) else list(path)
    if not paths:
        return None
    for p in paths:
        nifti = is_nifti_path(p) and not os.path.isdir(p)
        if not nifti and not is_dicom_source(p):
            return None
    return read_layers


def contrast_limits(data: np.ndarray, low: float = 0.5, high: float = 99.5) -> list[float]:
    """Percentile contrast limits on a subsample of at most ~1M voxels (never empty)."""
    flat = np.asarray(data).ravel()
    step = max(1, flat.size // 1_000_000)
    lo, hi = (float(v) for v in np.percentile(flat[::step], [low, high]))
    if not hi > lo:
        lo, hi = float(flat.min()), float(flat.max())
    if not hi > lo:
        hi = lo + 1.0
    return [lo, hi]


def layer_data(vol: Volume, *, labels: bool, name: str | None = None) -> LayerData:
    """A napari layer-data tuple for a volume, with scale and NIfTI metadata."""
    kwargs: dict[str, Any] = {
        "name": name or vol.name,
        "scale": tuple(float(s) for s in vol.spacing),
        "metadata": volume_metadata(vol),
    }
    if labels:
        if int(np.max(vol.data, initial=0)) < len(BASE_COLORS):  # the dock's class colours
            kwargs["colormap"] = {**BASE_COLORS, None: (0.6, 0.6, 0.6, 1.0)}
        return (vol.data, kwargs, "labels")
    kwargs["colormap"] = "gray"
    kwargs["contrast_limits"] = contrast_limits(vol.data)
    return (vol.data, kwargs, "image")


def read_layers(path: PathLike | Sequence[PathLike]) -> list[LayerData]:
    """Read NIfTI file(s) or DICOM series into layer-data tuples (``NiftiError`` or
    ``DicomError`` for bad input, with one sentence)."""
    paths = [path] if isinstance(path, str | os.PathLike) else list(path)
    files = [p for p in paths if not is_nifti_path(p) and os.path.isfile(p)]
    layers = []
    if files:  # DICOM files dropped together: each stands for its series, so read once
        vol = read_dicom(files)
        layers.append(layer_data(vol, labels=False, name=vol.name))
    for p in paths:
        if p in files:
            continue
        vol = read_image(p, kind="auto")
        name = nifti_stem(p) if is_nifti_path(p) else vol.name
        layer = layer_data(vol, labels=vol.is_labels, name=name)
        if vol.is_labels and is_nifti_path(p):
            _add_background_slices(layer, p)
        layers.append(layer)
    return layers


def _add_background_slices(layer: LayerData, path: PathLike) -> None:
    """Put the sidecar's background-only slices (flat indices) into the layer metadata."""
    try:
        flat = read_background_slices(path, tuple(np.shape(layer[0])))
    except AnnotationError as exc:
        warnings.warn(f"Background-only slices not loaded: {exc}", stacklevel=2)
        return
    if flat:
        layer[1]["metadata"][BACKGROUND_KEY] = sorted(flat)
