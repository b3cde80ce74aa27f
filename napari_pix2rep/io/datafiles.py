"""What is an image and what is a label file: one rule for the reader, the CLI and the dock.

A NIfTI file is a *label file* (a segmentation, not an image) when its name ends with
``_gt``, ``_seg``, ``_label``, ``_labels`` or ``_mask`` just before ``.nii`` /
``.nii.gz`` (any case), e.g. ``patient001_frame01_gt.nii.gz`` or ``heart_seg.nii``.
The reader opens such files as labels layers (when their values are integers); pretraining
never trains on them. No torch import.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: NIfTI file-name endings (any case).
NIFTI_SUFFIXES = (".nii.gz", ".nii")

#: The end of a label file's name (see the module docstring).
LABEL_NAME = re.compile(r"(_gt|_seg|_label|_labels|_mask)\.nii(\.gz)?$", re.IGNORECASE)

#: The same rule in words, for messages, help and tooltips.
LABEL_NAMES = "*_gt, *_seg, *_label(s) or *_mask"


def is_nifti_path(path: str | os.PathLike[str]) -> bool:
    """True when the path ends with ``.nii`` or ``.nii.gz`` (case-insensitive)."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def nifti_stem(path: str | os.PathLike[str]) -> str:
    """File name without ``.nii`` / ``.nii.gz`` (``p_frame01.nii.gz`` -> ``p_frame01``)."""
    name = Path(path).name
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def nifti_suffix(path: str | os.PathLike[str]) -> str:
    """``".nii.gz"`` or ``".nii"``: the suffix a temporary file for ``path`` keeps."""
    path = Path(path)
    return ".nii.gz" if path.name.lower().endswith(".nii.gz") else ".nii"


def is_label_name(path: str | os.PathLike) -> bool:
    """True when the file name marks a label file (``*_gt.nii.gz``, ``*_seg.nii`` ...)."""
    return LABEL_NAME.search(Path(path).name) is not None


@dataclass
class TrainingFiles:
    """NIfTI images to train on and the files left out, with why."""

    images: list[Path]
    labels: list[Path] = field(default_factory=list)  # skipped: named like label files
    excluded: list[Path] = field(default_factory=list)  # skipped: matched an exclude glob

    def summary(self) -> str:
        """``"3 files (skipped: 2 label files named *_gt, *_seg, *_label(s) or *_mask,
        1 matching --exclude)"``."""
        skipped = []
        if self.labels:
            n = len(self.labels)
            skipped.append(f"{n} label file{'s' * (n != 1)} named {LABEL_NAMES}")
        if self.excluded:
            skipped.append(f"{len(self.excluded)} matching --exclude")
        extra = f" (skipped: {', '.join(skipped)})" if skipped else ""
        return f"{len(self.images)} file{'s' * (len(self.images) != 1)}{extra}"


def find_training_images(
    inputs: Iterable[str | os.PathLike], exclude: Sequence[str] = ()
) -> TrainingFiles:
    """Images named in ``inputs`` or found under them (folders searched recursively).

    NIfTI files are listed themselves; each DICOM series once, as its first file in each
    folder (which :func:`napari_pix2rep.io.images.read_image` reads as the whole series).
    Label files (:func:`is_label_name`) are always left out, and so are files whose name
    or whole path matches an ``exclude`` glob. Raises ``FileNotFoundError`` for an input
    that does not exist, ``ValueError`` when no image is left.
    """
    from napari_pix2rep.io.dicom_files import scan_series

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
    out = TrainingFiles([])
    for f in dict.fromkeys(found):
        if is_label_name(f):
            out.labels.append(f)
        elif any(fnmatch.fnmatch(f.name, g) or fnmatch.fnmatch(str(f), g) for g in exclude):
            out.excluded.append(f)
        else:
            out.images.append(f)
    if not out.images:
        raise ValueError(
            f"No NIfTI images or DICOM series found in the data given ({out.summary()}; "
            "label files and --exclude matches are skipped)."
        )
    return out
