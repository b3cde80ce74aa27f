"""Synthetic DICOM MR series written with pydicom, with the geometry known exactly.

``write_series`` writes one classic single-frame file per (phase, slice), in a shuffled
file order with scrambled instance numbers, and returns what it wrote so tests can check
every voxel against the DICOM formula. Vendor styles imitate how GE, Siemens and Philips
fill the headers (image types, pixel representation, rescale, transfer syntax, names).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"

VENDORS = {
    "GE": {
        "manufacturer": "GE MEDICAL SYSTEMS",
        "image_type": ["ORIGINAL", "PRIMARY", "CARDIAC", "NONE"],
        "signed": True,
        "syntax": ExplicitVRLittleEndian,
        "slope": None,
        "name": "{n}.dcm",
    },
    "Siemens": {
        "manufacturer": "SIEMENS",
        "image_type": ["ORIGINAL", "PRIMARY", "M", "RETRO", "DIS2D"],
        "signed": False,
        "syntax": ImplicitVRLittleEndian,
        "slope": None,
        "name": "MR.{n:06d}.ima",
    },
    "Philips": {
        "manufacturer": "Philips Medical Systems",
        "image_type": ["ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE"],
        "signed": False,
        "syntax": ExplicitVRLittleEndian,
        "slope": (2.5, -100.0),
        "name": "IM_{n:04d}",  # no extension, as Philips DICOM export writes them
    },
}


@dataclass
class Written:
    """One file: its acquisition (phase, slice) indices, path, IPP (LPS) and trigger time."""

    t: int
    z: int
    path: Path
    ipp: np.ndarray
    trigger_ms: float | None


def rotation(seed: int = 0) -> np.ndarray:
    """A random 3x3 rotation (oblique orientation)."""
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def write_series(
    folder: Path,
    values: np.ndarray,
    *,
    vendor: str = "GE",
    orientation: np.ndarray | None = None,
    origin: tuple[float, float, float] = (-120.5, 80.25, 30.0),
    pixel_spacing: tuple[float, float] = (1.25, 1.5),
    step_mm: float = 8.0,
    trigger_ms: np.ndarray | None = None,
    uid: str | None = None,
    description: str = "CINE SAX",
    number: int = 7,
    patient: str = "Test^Patient",
    skip: set[tuple[int, int]] = frozenset(),
    seed: int = 0,
    prefix: str = "",
    overrides: dict | None = None,
) -> list[Written]:
    """Write ``values`` ``(t, z, rows, cols)`` (rescaled, i.e. true values) as a series.

    ``orientation`` is a (3, 3) matrix whose rows are the row direction, the column
    direction and the slice direction (LPS); slice ``z`` sits at
    ``origin + z * step_mm * orientation[2]``. ``trigger_ms`` is ``(t, z)`` (default: per
    slice offsets and intervals that differ). ``skip`` leaves out (t, z) images;
    ``prefix`` starts every file name (two series in one folder).
    ``overrides`` sets extra attributes on every file (e.g. ``{"Rows": 10}``).
    """
    style = VENDORS[vendor]
    folder.mkdir(parents=True, exist_ok=True)
    values = np.asarray(values, dtype=np.float64)
    nt, nz, rows, cols = values.shape
    rot = np.eye(3) if orientation is None else np.asarray(orientation, float)
    if trigger_ms is None:
        trigger_ms = np.array(
            [[12.0 + 3.5 * z + t * (40.0 - 0.7 * z) for z in range(nz)] for t in range(nt)]
        )
    uid = uid or generate_uid()
    study = generate_uid(entropy_srcs=[patient])
    rng = np.random.default_rng(seed)
    order = [(t, z) for t in range(nt) for z in range(nz) if (t, z) not in skip]
    names = rng.permutation(len(order)) + 1
    instances = rng.permutation(len(order)) + 1
    slope, intercept = style["slope"] or (1.0, 0.0)
    out = []
    for k, (t, z) in enumerate(order):
        stored = np.round((values[t, z] - intercept) / slope)
        dtype = np.int16 if style["signed"] else np.uint16
        info = np.iinfo(dtype)
        assert stored.min() >= info.min and stored.max() <= info.max, "values do not fit"
        assert np.allclose(stored * slope + intercept, values[t, z]), "not on the rescale grid"
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MR_STORAGE
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = style["syntax"]
        path = folder / (prefix + style["name"].format(n=int(names[k])))
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = MR_STORAGE
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = uid
        ds.Modality = "MR"
        ds.Manufacturer = style["manufacturer"]
        ds.PatientName = patient
        ds.PatientID = "ID" + patient[:4]
        ds.SeriesDescription = description
        ds.SeriesNumber = number
        ds.InstanceNumber = int(instances[k])
        ds.ImageType = style["image_type"]
        ipp = np.asarray(origin, float) + z * step_mm * rot[2]
        ds.ImagePositionPatient = [f"{v:.6g}" for v in ipp]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in rot[:2].ravel()]
        ds.PixelSpacing = [str(pixel_spacing[0]), str(pixel_spacing[1])]
        ds.SliceThickness = str(step_mm * 0.8)
        ds.SliceLocation = f"{float(np.dot(ipp, rot[2])):.4f}"
        if vendor == "GE":
            ds.SpacingBetweenSlices = str(step_mm)
            ds.CardiacNumberOfImages = nt
        if nt > 1:
            ds.TriggerTime = f"{trigger_ms[t, z]:.4f}"
            ds.NominalInterval = int(trigger_ms[-1, z] - trigger_ms[0, z])
        if style["slope"]:
            ds.RescaleSlope = str(slope)
            ds.RescaleIntercept = str(intercept)
            ds.add_new(0x2005100E, "FL", 0.123)  # Philips private scale slope (ignored)
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1 if style["signed"] else 0
        ds.PixelData = stored.astype(dtype).tobytes()
        for key, value in (overrides or {}).items():
            setattr(ds, key, value)
        ds.save_as(path, implicit_vr=style["syntax"] == ImplicitVRLittleEndian, little_endian=True)
        out.append(Written(t, z, path, ipp, float(trigger_ms[t, z]) if nt > 1 else None))
    return out


def unique_values(nt: int, nz: int, rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """``(t, z, rows, cols)`` integer intensities, different in every image."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 1000, size=(nt, nz, rows, cols)).astype(np.float64)
    data[:, :, 0, 0] = np.arange(nt * nz).reshape(nt, nz) + 2000  # a tag per image
    return data


def lps_to_ras(points: np.ndarray) -> np.ndarray:
    """DICOM LPS coordinates (..., 3) to NIfTI RAS."""
    return np.asarray(points) * np.array([-1.0, -1.0, 1.0])
