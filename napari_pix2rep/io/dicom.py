"""A DICOM short-axis series (cine or single phase) as a :class:`~.nifti.Volume`.

Geometry, all from the headers and never from file names or instance numbers:

- slices are sorted by ImagePositionPatient projected on the slice normal (the cross
  product of the two ImageOrientationPatient direction cosines);
- phases are sorted by TriggerTime *within each slice position* (each slice is often its own
  breath-hold, so trigger times differ between slices; InstanceNumber breaks ties or stands
  in when there is no TriggerTime);
- the affine maps NIfTI voxel ``(i, j, k)`` = (column, row, slice) to
  ``IPP_0 + i * dc * X + j * dr * Y + k * step`` in DICOM's LPS frame, with ``X``/``Y`` the
  row/column direction cosines, ``(dr, dc)`` = PixelSpacing and ``step`` the measured
  vector between the first and last slice positions / (n - 1); it is then converted to
  NIfTI's RAS frame (x and y negated);
- RescaleSlope / RescaleIntercept are applied per file; the time spacing is the median
  trigger-time step in seconds.

Data is in display order, ``(t, z, y, x)`` for a cine and ``(z, y, x)`` for one phase, with
``y`` the DICOM rows and ``x`` the columns. Every problem raises :class:`DicomError` with
one sentence. This module imports neither torch nor Qt; pydicom is imported lazily.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import nibabel as nib
import numpy as np

from napari_pix2rep.io.dicom_files import DicomError, ImageHeader, SeriesInfo, quiet, scan_series
from napari_pix2rep.io.errors import error_message
from napari_pix2rep.io.nifti import Volume, spacing_from_header
from napari_pix2rep.io.nifti_limits import check_declared_size

__all__ = ["DicomError", "DicomVolume", "read_dicom", "safe_name", "series_name"]

#: two images closer than this along the slice normal (mm) are at the same slice position
SAME_POSITION_MM = 0.05
#: slice positions may deviate from an even grid by this fraction of the step
STEP_TOLERANCE = 0.01
#: direction cosines that differ by more than this are another orientation; also how far
#: from unit length and from a right angle a pair of cosines may be
ORIENTATION_TOLERANCE = 1e-3
#: images at one slice position must start within this distance in the image plane (mm)
IN_PLANE_MM = 0.5
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_PICK = (
    "pick one with `pix2rep convert --series UID` (or its series number), or give one of "
    "its files or a folder that holds only that series"
)


@dataclass
class DicomVolume(Volume):
    """A :class:`Volume` read from a DICOM series; ``path`` is the first input given.

    ``series`` describes the series (UID, description, patient); ``skipped`` counts the
    files that were not DICOM images and were left out. ``instances[t][z]`` is the
    header of the file that image ``(t, z)`` of ``data`` came from (``t`` = 0 for one
    phase), so results on this grid can refer back to the source files.
    """

    series: SeriesInfo | None = None
    skipped: int = 0
    instances: list[list[ImageHeader]] = field(default_factory=list)

    @property
    def name(self) -> str:
        """Patient and series description (series number when there is none), file-safe."""
        return "dicom" if self.series is None else _series_name(self.series)


def _series_name(s: SeriesInfo) -> str:
    what = s.description or (f"series{s.number}" if s.number else "series")
    return safe_name(f"{s.patient}_{what}" if s.patient else what)


def series_name(inputs: str | os.PathLike[str], series: str | None = None) -> str:
    """The file-safe name (patient + description) of the one series of ``inputs``, from
    the headers alone; raises :class:`DicomError` like :func:`read_dicom` would."""
    found, _ = scan_series(inputs)
    with_images = [s for s in found if s.images]
    if not with_images:
        raise DicomError(f"Found no DICOM images in {inputs}.")
    return _series_name(_choose(with_images, str(inputs), series))


def safe_name(text: str) -> str:
    """``text`` as a file name: letters, digits, ``-`` ``_`` ``.`` only, no leading dot."""
    out = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "dicom"
    return out[:100]


def _choose(series: list[SeriesInfo], where: str, pick: str | None) -> SeriesInfo:
    if pick is not None:
        chosen = [s for s in series if pick in (s.uid, s.number)]
        if not chosen:
            listed = ", ".join(s.summary() for s in series)
            raise DicomError(f"There is no series {pick!r} in {where}, only {listed}.")
        if len(chosen) > 1:
            raise DicomError(
                f"Several series in {where} have number {pick}; give the SeriesInstanceUID."
            )
        return chosen[0]
    if len(series) > 1:
        listed = "; ".join(s.summary() for s in series)
        raise DicomError(f"Found {len(series)} DICOM series in {where}: {listed}; {_PICK}.")
    return series[0]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _check_uniform(images: list[ImageHeader], uid: str) -> None:
    """Localizers mixed in, multi-frame files, mixed matrix sizes / pixel spacings."""
    loc = [im for im in images if im.localizer]
    if loc and len(loc) < len(images):
        names = ", ".join(im.path.name for im in loc[:3])
        raise DicomError(
            f"Series {uid} mixes {len(loc)} localizer/scout images ({names}) with "
            f"{len(images) - len(loc)} others; move the localizer files out of the folder."
        )
    multi = [im for im in images if im.frames > 1]
    if multi:
        raise DicomError(
            f"{multi[0].path.name} is a multi-frame (enhanced) DICOM file with "
            f"{multi[0].frames} frames; only classic single-frame series are supported."
        )
    for what, key, unit in (
        ("matrix sizes", lambda im: (im.rows, im.columns), "rows x columns"),
        ("pixel spacings", lambda im: tuple(round(v, 4) for v in im.pixel_spacing or ()), "mm"),
    ):
        kinds: dict = {}
        for im in images:
            kinds.setdefault(key(im), []).append(im)
        if len(kinds) > 1:
            parts = ", ".join(
                f"{_count(len(v), 'image')} of {' x '.join(map(str, k)) if k else 'none'} "
                f"({v[0].path.name})"
                for k, v in kinds.items()
            )
            raise DicomError(f"Series {uid} has mixed {what} ({unit}): {parts}.")
    missing = [im for im in images if im.position is None or len(im.orientation) != 6]
    if missing or images[0].pixel_spacing is None:
        bad = (missing or images)[0].path.name
        raise DicomError(
            f"{bad} lacks ImagePositionPatient, ImageOrientationPatient or PixelSpacing, "
            "so its position in the patient is unknown."
        )
    spacing = images[0].pixel_spacing
    if not all(np.isfinite(spacing)) or min(spacing) <= 0:
        raise DicomError(
            f"{images[0].path.name} has PixelSpacing {' / '.join(f'{v:g}' for v in spacing)}; "
            "the pixel size must be two positive numbers (mm)."
        )
    bad_pos = [im for im in images if not np.isfinite(im.position).all()]
    if bad_pos:
        raise DicomError(f"{bad_pos[0].path.name} has a non-numeric ImagePositionPatient.")


def _orientation(images: list[ImageHeader], uid: str) -> np.ndarray:
    """The common (2, 3) row/column direction cosines; error if the slices differ or the
    cosines are not two unit vectors at a right angle."""
    first = np.asarray(images[0].orientation, float).reshape(2, 3)
    norms = np.linalg.norm(first, axis=1)
    tol = ORIENTATION_TOLERANCE
    if (
        not np.isfinite(first).all()
        or np.abs(norms - 1.0).max() > tol
        or abs(float(np.dot(first[0], first[1]))) > tol
    ):
        given = "\\".join(f"{v:g}" for v in images[0].orientation)
        raise DicomError(
            f"{images[0].path.name} has ImageOrientationPatient {given}, which is not two "
            "unit vectors at a right angle, so the image's orientation in the patient is "
            "unknown."
        )
    normal = np.cross(first[0], first[1])
    other = [
        im
        for im in images
        if np.abs(np.asarray(im.orientation, float).reshape(2, 3) - first).max()
        > ORIENTATION_TOLERANCE
    ]
    if other:
        o = np.asarray(other[0].orientation, float).reshape(2, 3)
        tilted = np.abs(np.cross(o[0], o[1]) - normal).max() > ORIENTATION_TOLERANCE
        how = "are not parallel" if tilted else "are rotated in plane against each other"
        raise DicomError(
            f"The slices of series {uid} {how}: {len(other)} of {len(images)} images "
            f"(e.g. {other[0].path.name}) have another ImageOrientationPatient than "
            f"{images[0].path.name}."
        )
    return first


def _group_positions(
    images: list[ImageHeader], normal: np.ndarray
) -> list[tuple[float, list[ImageHeader]]]:
    """Images grouped by slice position (sorted along the normal), phases sorted in each."""
    depth = {id(im): float(np.dot(im.position, normal)) for im in images}
    ordered = sorted(images, key=lambda im: depth[id(im)])
    groups: list[list[ImageHeader]] = [[ordered[0]]]
    for im in ordered[1:]:
        if depth[id(im)] - depth[id(groups[-1][0])] > SAME_POSITION_MM:
            groups.append([])
        groups[-1].append(im)

    def phase_key(im: ImageHeader) -> tuple:
        return (im.trigger_ms is None, im.trigger_ms or 0.0, im.instance or 0, str(im.path))

    out = []
    for g in groups:
        g.sort(key=phase_key)
        d = float(np.mean([depth[id(im)] for im in g]))
        offsets = [float(np.linalg.norm(np.subtract(im.position, g[0].position))) for im in g]
        if max(offsets) > IN_PLANE_MM:
            far = g[int(np.argmax(offsets))]
            raise DicomError(
                f"{far.path.name} and {g[0].path.name} are both at {d:.1f} mm along the "
                f"slice normal but {max(offsets):.1f} mm apart in the image plane: they are "
                "not phases of one slice (two stacks side by side?); give one stack."
            )
        times = [im.trigger_ms for im in g if im.trigger_ms is not None]
        if len(set(times)) < len(times):
            dup = next(t for t in times if times.count(t) > 1)
            names = ", ".join(im.path.name for im in g if im.trigger_ms == dup)
            raise DicomError(
                f"The slice at {d:.1f} mm along the normal has several images with trigger "
                f"time {dup:g} ms ({names}); remove the duplicates or repeated acquisition."
            )
        out.append((d, g))
    return out


def _missing_phase_text(ref: list[ImageHeader], short: list[ImageHeader]) -> str:
    """Which phases of ``ref`` have no counterpart in ``short`` (by nearest trigger time)."""
    ref_t = [im.trigger_ms for im in ref]
    short_t = [im.trigger_ms for im in short]
    if None in ref_t or None in short_t:
        return ""
    nearest = [int(np.argmin([abs(r - t) for r in ref_t])) for t in short_t]
    if len(set(nearest)) < len(nearest):
        return ""
    gone = [i for i in range(len(ref)) if i not in nearest]
    return ": missing " + ", ".join(f"phase {i} (near {ref_t[i]:g} ms)" for i in gone)


def _check_phases(groups: list[tuple[float, list[ImageHeader]]]) -> int:
    counts = [len(g) for _, g in groups]
    n = max(counts)
    short = [(k, d, g) for k, (d, g) in enumerate(groups) if len(g) < n]
    if short:
        ref = next(g for _, g in groups if len(g) == n)
        k, d, g = short[0]
        more = f" ({len(short) - 1} other slices too)" if len(short) > 1 else ""
        raise DicomError(
            f"Phases are missing: slice {k} of {len(groups)} (at {d:.1f} mm along the normal) "
            f"has {len(g)} of {n} phases{_missing_phase_text(ref, g)}{more}."
        )
    return n


def _slice_step(groups: list[tuple[float, list[ImageHeader]]], normal: np.ndarray) -> np.ndarray:
    """The LPS vector from one slice position to the next (checked to be even); for a
    single slice, the normal times SpacingBetweenSlices or SliceThickness (else 1 mm)."""
    pos = np.array([g[0].position for _, g in groups], float)
    if len(groups) == 1:
        first = groups[0][1][0]
        size = first.spacing_between or first.slice_thickness
        return normal * (abs(size) if size else 1.0)
    d = np.array([dd for dd, _ in groups])
    gaps = np.diff(d)
    unit = float(gaps.min())
    ratio = gaps / unit
    tol = STEP_TOLERANCE
    if np.all(np.abs(ratio - np.round(ratio)) < 0.05) and ratio.max() > 1.5:
        k = int(np.argmax(ratio > 1.5))
        lost = int(sum(round(r) - 1 for r in ratio))
        raise DicomError(
            f"Slices are missing: {lost} slice position(s) between {d[k]:.1f} and "
            f"{d[k + 1]:.1f} mm along the normal ({groups[k][1][0].path.name} and "
            f"{groups[k + 1][1][0].path.name}; the step elsewhere is {unit:.2f} mm)."
        )
    step = (pos[-1] - pos[0]) / (len(pos) - 1)
    fitted = pos[0] + np.arange(len(pos))[:, None] * step
    if np.abs(pos - fitted).max() > tol * max(np.linalg.norm(step), 1.0):
        raise DicomError(
            f"The slice positions are not evenly spaced (steps from {gaps.min():.2f} to "
            f"{gaps.max():.2f} mm along the normal), so no single affine places every slice."
        )
    return step


def _pixels(im: ImageHeader) -> np.ndarray:
    """Rescaled ``(rows, columns)`` float64 pixels of one file."""
    import pydicom

    with quiet():
        ds = pydicom.dcmread(im.path)
        if "PixelData" not in ds:
            raise DicomError(f"{im.path.name} has no pixel data.")
        if int(ds.get("SamplesPerPixel", 1)) != 1:
            raise DicomError(f"{im.path.name} is a colour image; only greyscale is supported.")
        try:
            arr = np.asarray(ds.pixel_array, dtype=np.float64)
        except Exception as exc:
            syntax = ds.file_meta.get("TransferSyntaxUID")
            name = getattr(syntax, "name", str(syntax))
            raise DicomError(
                f"Cannot decode the pixel data of {im.path.name} (transfer syntax {name}): "
                f"{error_message(exc, clause=True, limit=200)}."
            ) from exc
    if arr.shape != (im.rows, im.columns):
        raise DicomError(f"{im.path.name}: pixel data {arr.shape} does not match its header.")
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    return arr * slope + intercept


def _header(
    shape: tuple[int, ...], affine: np.ndarray, dt_s: float | None, integral: bool, info: str
) -> nib.Nifti1Header:
    """A NIfTI-1 header for display-order ``shape`` (sform = qform = ``affine``, code 1)."""
    header = nib.Nifti1Header()
    header.set_data_shape(tuple(reversed(shape)))
    header.set_data_dtype(np.int16 if integral else np.float32)
    header.set_sform(affine, code=1)
    header.set_qform(affine, code=1)
    zooms = [float(np.linalg.norm(affine[:3, c])) for c in range(3)]
    if len(shape) == 4:
        zooms.append(dt_s if dt_s else 1.0)
    header.set_zooms(zooms)
    header.set_xyzt_units("mm", "sec" if dt_s and len(shape) == 4 else "unknown")
    header["descrip"] = info.encode("ascii", "replace")[:79]
    return header


def _affine(first: ImageHeader, cosines: np.ndarray, step: np.ndarray) -> np.ndarray:
    """The voxel-to-RAS affine of a stack starting at ``first``, ``step`` between slices."""
    dr, dc = first.pixel_spacing
    lps = np.eye(4)
    lps[:3, 0] = cosines[0] * dc
    lps[:3, 1] = cosines[1] * dr
    lps[:3, 2] = step
    lps[:3, 3] = first.position
    return _LPS_TO_RAS @ lps


def _frame_interval_s(
    groups: list[tuple[float, list[ImageHeader]]], images: list[ImageHeader], n_phases: int
) -> float | None:
    """The median time between phases in seconds (None: one phase, or untimed images)."""
    if n_phases < 2 or any(im.trigger_ms is None for im in images):
        return None
    steps = [np.diff([im.trigger_ms for im in g]) for _, g in groups]
    return float(np.median(np.concatenate(steps))) / 1000.0


def read_dicom(
    inputs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    series: str | None = None,
) -> DicomVolume:
    """Read one DICOM series into a :class:`DicomVolume`, ``(t, z, y, x)`` or ``(z, y, x)``.

    ``inputs`` is a folder (searched recursively), one file (its series in its folder) or
    several of these; together they must hold one image series, unless ``series`` (a
    SeriesInstanceUID or series number) picks one. Non-DICOM files and DICOM files without
    pixel data are skipped and counted in ``skipped``. Raises :class:`DicomError`.
    """
    paths = [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs)
    if not paths:
        raise DicomError("No DICOM input was given.")
    where = str(paths[0]) if len(paths) == 1 else f"the {len(paths)} inputs"
    found, non_dicom = scan_series(paths)
    with_images = [s for s in found if s.images]
    non_image = sum(s.non_image for s in found)
    if not with_images:
        raise DicomError(
            f"Found no DICOM images in {where} ({non_dicom} non-DICOM files and {non_image} "
            "DICOM files without image data skipped)."
        )
    info = _choose(with_images, where, series)
    images = list({im.sop_uid or str(im.path): im for im in info.images}.values())
    _check_uniform(images, info.uid)
    cosines = _orientation(images, info.uid)
    normal = np.cross(cosines[0], cosines[1])
    groups = _group_positions(images, normal)
    n_phases = _check_phases(groups)
    untimed = [im for im in images if im.trigger_ms is None]
    if n_phases > 1 and 0 < len(untimed) < len(images):
        raise DicomError(
            f"{_count(len(untimed), 'image')} of series {info.uid} (e.g. "
            f"{untimed[0].path.name}) lack a TriggerTime that the other "
            f"{len(images) - len(untimed)} have, so their phase in the cardiac cycle is "
            "unknown; restore the TriggerTime or remove those files."
        )
    first = groups[0][1][0]
    try:  # before any pixel data is decoded
        check_declared_size(
            f"Series {info.uid}", (first.columns, first.rows, len(groups), n_phases), 8
        )
    except ValueError as exc:
        raise DicomError(str(exc)) from None
    affine = _affine(first, cosines, _slice_step(groups, normal))
    stack = np.stack([np.stack([_pixels(im) for im in g]) for _, g in groups], axis=1)
    integral = bool(
        np.array_equal(stack, np.round(stack)) and stack.min() >= -32768 and stack.max() < 32768
    )
    dt_s = _frame_interval_s(groups, images, n_phases)
    data = (stack if n_phases > 1 else stack[0]).astype(np.float32)
    label = f"{info.description or 'series ' + info.number} from DICOM".strip()
    header = _header(data.shape, affine, dt_s, integral, label)
    vol = DicomVolume(
        data=data,
        spacing=spacing_from_header(header, data.ndim),
        header=header,
        affine=header.get_best_affine(),
        path=str(paths[0]),
        series=info,
        skipped=non_dicom + non_image,
        instances=[[g[t] for _, g in groups] for t in range(n_phases)],
    )
    return vol
