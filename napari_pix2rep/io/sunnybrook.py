"""The Sunnybrook Cardiac Data's expert contours, as label slices of a read series.

A series folder ``SCD...`` has a sibling ``SCD..._contours`` with ``i-contours/`` (LV
endocardium: the cavity boundary) and ``o-contours/`` (epicardium). Each file
``IM-0001-NNNN-icontour-manual.txt`` belongs to the DICOM file of InstanceNumber NNNN
and lists ``(x, y)`` points in that image's pixel coordinates (x along the columns).
An image is placed in the 4D volume by its ImagePositionPatient (slice) and the rank of
its TriggerTime among the images at that position (phase), as :mod:`napari_pix2rep.io.dicom`
orders them. Labels use the ACDC values: myocardium 2 (between the contours), LV 3.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_pix2rep.io.nifti import Volume

MYO, LV = 2, 3


@dataclass
class ContouredSlice:
    """One contoured image: ``frame`` and ``slice`` in the volume, ``labels`` ``(rows,
    cols)`` uint8; ``has_myocardium`` when it has an o-contour too (else only the LV
    cavity is known and the rest of the slice is not labelled)."""

    frame: int
    slice: int
    labels: np.ndarray
    has_myocardium: bool


def polygon_mask(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixels whose centre lies inside the ``(n, 2)`` polygon of ``(x, y)`` points (x
    along the columns, y along the rows), by the even-odd rule: bool ``shape``."""
    x0, y0 = points[:, 0], points[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    lo = np.maximum(np.floor(points.min(0)).astype(int), 0)
    hi = np.minimum(np.ceil(points.max(0)).astype(int) + 1, [shape[1], shape[0]])
    mask = np.zeros(shape, bool)
    if (hi <= lo).any():
        return mask
    rows, cols = np.mgrid[lo[1] : hi[1], lo[0] : hi[0]]  # the polygon's bounding box only
    px, py = cols.ravel()[:, None].astype(float), rows.ravel()[:, None].astype(float)
    crosses = (y0 > py) != (y1 > py)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = x0 + (py - y0) * (x1 - x0) / (y1 - y0)
    inside = np.count_nonzero(crosses & (px < x_at), axis=1) % 2 == 1
    mask[lo[1] : hi[1], lo[0] : hi[0]] = inside.reshape(rows.shape)
    return mask


def contours_folder(series: Path) -> Path:
    """The contours folder beside a series folder."""
    return series.parent / f"{series.name}_contours"


def contoured_slices(series: str | Path, volume: Volume) -> list[ContouredSlice]:
    """Every image of ``series`` with an expert i-contour, placed in ``volume`` (the
    series read by :func:`napari_pix2rep.io.dicom.read_dicom`), ordered by (frame, slice)."""
    import pydicom

    series = Path(series)
    folder = contours_folder(series)
    headers = {
        int(f.stem): pydicom.dcmread(f, stop_before_pixels=True) for f in series.glob("*.dcm")
    }
    positions: dict[tuple[float, ...], list[float]] = {}
    for h in headers.values():
        positions.setdefault(tuple(map(float, h.ImagePositionPatient)), []).append(
            float(h.TriggerTime)
        )
    inverse = np.linalg.inv(volume.affine)
    out = []
    for inner in sorted((folder / "i-contours").glob("*.txt")):
        number = int(inner.name.split("-")[2])
        ds = headers[number]
        ipp = tuple(float(v) for v in ds.ImagePositionPatient)
        frame = sorted(positions[ipp]).index(float(ds.TriggerTime))
        # LPS (DICOM) -> RAS (the volume's affine), then the voxel of the first pixel
        index = int(round((inverse @ [-ipp[0], -ipp[1], ipp[2], 1.0])[2]))
        shape = volume.shape[-2:]
        labels = np.zeros(shape, np.uint8)
        outer = folder / "o-contours" / inner.name.replace("icontour", "ocontour")
        if outer.exists():
            labels[polygon_mask(np.loadtxt(outer), shape)] = MYO
        labels[polygon_mask(np.loadtxt(inner), shape)] = LV
        out.append(ContouredSlice(frame, index, labels, outer.exists()))
    return sorted(out, key=lambda c: (c.frame, c.slice))
