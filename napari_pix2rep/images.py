"""One entry point for images on disk: a NIfTI file or a DICOM series (folder or file).

:func:`read_image` is what the CLI, the npe2 reader and the pretraining job call, so every
command that takes an image takes either. :func:`find_images` lists the images under
folders for pretraining (NIfTI files and one entry per DICOM series). No torch import.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

from .dicom import read_dicom
from .dicom_files import DicomError, folder_has_dicom, is_dicom_file, scan_series
from .nifti import NiftiError, Volume, is_nifti_path, read_nifti

__all__ = ["find_images", "is_dicom_source", "read_image"]


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


def find_images(
    inputs: Iterable[str | os.PathLike[str]], exclude: Sequence[str] = ()
) -> list[Path]:
    """Images named in ``inputs`` or found under them (folders searched recursively).

    NIfTI files are listed themselves; each DICOM series is listed once, as its first
    file (which :func:`read_image` reads as the whole series of its folder). ``exclude``
    globs are matched against the file name and the whole path. Raises
    ``FileNotFoundError`` for an input that does not exist, ``ValueError`` if none is left.
    """
    found: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found.extend(sorted(f for f in p.rglob("*") if f.is_file() and is_nifti_path(f)))
            for info in scan_series(p)[0]:
                by_folder: dict[Path, Path] = {}
                for im in info.images:
                    by_folder.setdefault(im.path.parent, im.path)
                found.extend(sorted(by_folder.values()))
        elif p.is_file():
            found.append(p)
        else:
            raise FileNotFoundError(f"{p} does not exist.")

    def excluded(f: Path) -> bool:
        return any(fnmatch.fnmatch(f.name, g) or fnmatch.fnmatch(str(f), g) for g in exclude)

    files = [f for f in dict.fromkeys(found) if not excluded(f)]
    if not files:
        raise ValueError(
            "No NIfTI images or DICOM series found in the data given (after --exclude)."
        )
    return files
