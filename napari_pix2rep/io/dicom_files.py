"""Finding DICOM series on disk: which files are DICOM, their headers, grouping by series.

A DICOM file is recognised by its 128-byte preamble followed by ``DICM`` (Part 10), so
other files (notes, contour text files, ``.DS_Store``) are skipped and counted without
being parsed. Headers are read without pixel data. Series are keyed by
SeriesInstanceUID. This module imports neither torch nor Qt; pydicom is imported lazily.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from napari_pix2rep.io.errors import error_message

__all__ = [
    "DicomError",
    "ImageHeader",
    "SeriesInfo",
    "file_series_uid",
    "folder_has_dicom",
    "is_dicom_file",
    "quiet",
    "scan_series",
]

_LOCALIZER_TYPES = {"LOCALIZER", "SCOUT"}


class DicomError(ValueError):
    """A DICOM series cannot be read; the message is one sentence for the user."""


def is_dicom_file(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a file with the DICOM Part 10 preamble (``DICM`` at byte 128)."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def folder_has_dicom(folder: str | os.PathLike[str], max_checks: int = 16) -> bool:
    """Quick test (at most ``max_checks`` files opened): does ``folder`` hold DICOM files,
    directly or in its first few sub-folders?"""
    checked = 0
    subdirs = []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return False
    for entry in entries:
        if entry.is_dir():
            subdirs.append(entry.path)
        elif entry.is_file() and not entry.name.startswith("."):
            if is_dicom_file(entry.path):
                return True
            checked += 1
            if checked >= max_checks:
                return False
    return any(folder_has_dicom(d, max(1, (max_checks - checked) // 4)) for d in subdirs[:3])


@dataclass
class ImageHeader:
    """What one DICOM image file says about itself (no pixel data)."""

    path: Path
    series_uid: str
    sop_uid: str
    rows: int
    columns: int
    frames: int
    orientation: tuple[float, ...]  # ImageOrientationPatient: row then column direction, LPS
    position: tuple[float, ...] | None  # ImagePositionPatient of the first pixel, LPS mm
    pixel_spacing: tuple[float, float] | None  # (between rows, between columns), mm
    trigger_ms: float | None
    instance: int | None
    localizer: bool
    slice_thickness: float | None
    spacing_between: float | None


@dataclass
class SeriesInfo:
    """One series found on disk: its UID, what the scanner called it and its image files."""

    uid: str
    description: str
    number: str
    patient: str
    images: list[ImageHeader] = field(default_factory=list)
    non_image: int = 0  # files of this series without pixel data (skipped)

    @property
    def localizer(self) -> bool:
        """True when every image is marked LOCALIZER / SCOUT in its ImageType."""
        return bool(self.images) and all(im.localizer for im in self.images)

    def summary(self) -> str:
        """``UID 'description' (N files, series 3)`` for lists of series."""
        kind = ", localizer" if self.localizer else ""
        number = f", series {self.number}" if self.number else ""
        desc = f" '{self.description}'" if self.description else " (no description)"
        n = len(self.images)
        return f"{self.uid}{desc} ({n} file{'' if n == 1 else 's'}{number}{kind})"


def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n else None


def _number(value: Any) -> float | None:
    """A finite number, or None (missing, empty, unreadable, NaN or infinite)."""
    try:
        out = float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
    return out if out is None or math.isfinite(out) else None


def _read_header(path: Path) -> Any:
    """The header without pixel data (call inside ``quiet()``: values are parsed lazily)."""
    import pydicom

    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as exc:
        raise DicomError(
            f"{path.name} starts like a DICOM file but cannot be read "
            f"({error_message(exc, clause=True)})."
        ) from exc


def file_series_uid(path: str | os.PathLike[str]) -> str:
    """The SeriesInstanceUID of one DICOM file, from its header ("" when it has none)."""
    with quiet():
        return str(_read_header(Path(path)).get("SeriesInstanceUID", ""))


@contextmanager
def quiet() -> Iterator[None]:
    """Silence pydicom's warnings about non-conformant values (e.g. GE's UIDs)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _has_image(path: Path, ds: Any) -> bool:
    """True for an image file; False for a DICOM object without pixels (report, DICOMDIR,
    presentation state); an image-class file without its image size is an error."""
    if "Rows" in ds and "Columns" in ds:
        return True
    sop = ds.get("SOPClassUID") or ds.get("file_meta", {}).get("MediaStorageSOPClassUID")
    if sop is None or "Image" in getattr(sop, "name", "Image"):
        raise DicomError(
            f"{path.name} starts like a DICOM file but is incomplete or corrupt (it has no "
            "image size or SOP class; truncated?)."
        )
    return False


def _image_header(path: Path, ds: Any) -> ImageHeader:
    image_type = {str(v).upper() for v in (ds.get("ImageType") or [])}
    instance = _number(ds.get("InstanceNumber"))
    spacing = _floats(ds.get("PixelSpacing"), 2)
    return ImageHeader(
        path=path,
        series_uid=str(ds.get("SeriesInstanceUID", "")),
        sop_uid=str(ds.get("SOPInstanceUID", "")),
        rows=int(ds.Rows),
        columns=int(ds.Columns),
        frames=int(_number(ds.get("NumberOfFrames")) or 1),
        orientation=_floats(ds.get("ImageOrientationPatient"), 6) or (),
        position=_floats(ds.get("ImagePositionPatient"), 3),
        pixel_spacing=spacing if spacing else None,
        trigger_ms=_number(ds.get("TriggerTime")),
        instance=int(instance) if instance is not None else None,
        localizer=bool(image_type & _LOCALIZER_TYPES),
        slice_thickness=_number(ds.get("SliceThickness")),
        spacing_between=_number(ds.get("SpacingBetweenSlices")),
    )


def _candidates(inputs: Iterable[Path]) -> tuple[list[Path], dict[Path, set[str]]]:
    """Files to look at, and the series the file inputs restrict their folder to (every
    series a file was given of, so ``dir/*.dcm`` over two series finds both)."""
    files: dict[Path, None] = {}
    pick: dict[Path, set[str]] = {}  # folder -> series UIDs of the files given in it
    for p in inputs:
        if p.is_dir():
            files.update((f, None) for f in sorted(p.rglob("*")) if f.is_file())
        elif p.is_file():
            if not is_dicom_file(p):
                raise DicomError(f"{p.name} is not a DICOM file (no DICM preamble).")
            ds = _read_header(p)
            if not _has_image(p, ds):
                name = getattr(ds.get("SOPClassUID"), "name", "no SOP class")
                raise DicomError(f"{p.name} is a DICOM file without image data ({name}).")
            pick.setdefault(p.parent, set()).add(str(ds.get("SeriesInstanceUID", "")))
            files.update((f, None) for f in sorted(p.parent.iterdir()) if f.is_file())
        else:
            raise DicomError(f"{p} does not exist.")
    return list(files), pick


def scan_series(
    inputs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
) -> tuple[list[SeriesInfo], int]:
    """The DICOM series under ``inputs`` and the number of non-DICOM files skipped.

    Each input is a folder (every file under it, recursively) or one DICOM file (the files
    of its series in its folder). Files without pixel data (reports, DICOMDIR) are counted
    in their series' ``non_image`` (or skipped when they have no series). Series are in
    the order first seen; images in path order.
    """
    if isinstance(inputs, str | os.PathLike):
        inputs = [inputs]
    with quiet():
        return _scan([Path(p) for p in inputs])


def _scan(inputs: list[Path]) -> tuple[list[SeriesInfo], int]:
    files, pick = _candidates(inputs)
    series: dict[str, SeriesInfo] = {}
    skipped = 0
    for f in files:
        if f.name.startswith(".") or not is_dicom_file(f):
            skipped += 1
            continue
        ds = _read_header(f)
        uid = str(ds.get("SeriesInstanceUID", ""))
        if f.parent in pick and uid not in pick[f.parent]:
            continue
        info = series.get(uid)
        if info is None:
            info = series[uid] = SeriesInfo(
                uid=uid,
                description=str(ds.get("SeriesDescription", "") or "").strip(),
                number=str(ds.get("SeriesNumber", "") or "").strip(),
                patient=str(ds.get("PatientName", "") or ds.get("PatientID", "") or "").strip(),
            )
        if _has_image(f, ds):
            info.images.append(_image_header(f, ds))
        else:
            info.non_image += 1
    return [s for s in series.values() if s.images or s.non_image], skipped
