"""One entry point for images on disk: a NIfTI file or a DICOM series (folder or file).

:func:`read_image` is what the CLI, the npe2 reader and the pretraining job call, so every
command that takes an image takes either (:func:`napari_pix2rep.io.datafiles.find_training_images`
lists the images under folders for pretraining). No torch import.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np

from napari_pix2rep.io.datafiles import is_nifti_path, nifti_stem
from napari_pix2rep.io.dicom import read_dicom, series_name
from napari_pix2rep.io.dicom_files import DicomError, folder_has_dicom, is_dicom_file
from napari_pix2rep.io.nifti import NiftiError, Volume, nifti_grid, read_nifti

__all__ = ["image_grid", "image_stem", "is_dicom_source", "read_image"]


def is_dicom_source(path: str | os.PathLike[str]) -> bool:
    """True for a DICOM file or a folder holding DICOM files (a quick look, not a full scan)."""
    p = Path(path)
    return folder_has_dicom(p) if p.is_dir() else is_dicom_file(p)


def read_image(
    path: str | os.PathLike[str],
    *,
    kind: Literal["auto", "image", "labels"] = "auto",
    series: str | None = None,
) -> Volume:
    """A :class:`Volume` from a NIfTI file or a DICOM series (folder, or one of its files).

    ``kind`` is passed to :func:`~.nifti.read_nifti`; a DICOM series is always an image, so
    ``kind="labels"`` on one is an error. ``series`` picks a series in a folder holding
    several (see :func:`~.dicom.read_dicom`). Raises ``NiftiError`` or ``DicomError``.
    """
    p = Path(path)
    if is_nifti_path(p) and not p.is_dir():
        return read_nifti(p, kind=kind)
    if not p.exists():
        raise NiftiError(f"{p} does not exist.")
    if is_dicom_source(p):
        if kind == "labels":
            raise DicomError(f"{p.name} is a DICOM image series, not a segmentation (label map).")
        return read_dicom(p, series=series)
    if p.is_dir():
        raise DicomError(f"{p} holds neither DICOM files nor is it a NIfTI file.")
    raise NiftiError(f"{p.name} is neither a NIfTI file (.nii, .nii.gz) nor a DICOM file.")


def image_grid(
    path: str | os.PathLike[str],
) -> tuple[tuple[int, ...], tuple[float, ...], np.ndarray]:
    """``(shape, spacing, affine)`` of an image as :func:`read_image` gives them: from the
    header alone for NIfTI, by reading the series for DICOM. Same errors as
    :func:`read_image`."""
    p = Path(path)
    if is_nifti_path(p) and not p.is_dir():
        return nifti_grid(p)
    vol = read_image(p, kind="image")
    return vol.shape, vol.spacing, vol.affine


def image_stem(path: str | os.PathLike[str]) -> str:
    """The name outputs for an image are named after: the NIfTI file's stem, or a DICOM
    series' patient and description (file-safe), read from the headers only."""
    p = Path(path)
    if is_nifti_path(p) and not p.is_dir():
        return nifti_stem(p)
    if p.exists() and is_dicom_source(p):
        return series_name(p)
    return nifti_stem(p)
