"""What an untrusted NIfTI file may claim: grid size, units, and why a file is cut.

A header may declare any grid and a small gzip may inflate to gigabytes, so nothing is
allocated or inflated beyond a limit:

- :func:`check_declared_size`: the declared grid must hold at most ``max_voxels`` voxels
  (default :data:`DEFAULT_MAX_VOXELS`, 2 GiB of float32; the environment variable
  ``NAPARI_PIX2REP_MAX_VOXELS`` or ``read_nifti(..., max_voxels=N)`` changes it).
- :func:`space_unit_to_mm`: metres and microns are converted to mm; a converted voxel
  size outside :data:`PLAUSIBLE_MM` (the classic header that says metres while the values
  are mm) and an undefined unit code are refused.
- :func:`truncation`: inflates a gzip in chunks, counting bytes and stopping at the size
  the header declares plus a margin, with constant memory.

This module imports neither torch nor Qt.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np

#: Environment variable overriding :data:`DEFAULT_MAX_VOXELS`.
MAX_VOXELS_ENV = "NAPARI_PIX2REP_MAX_VOXELS"
#: Most voxels a file may declare by default: 2 GiB once decoded as float32.
DEFAULT_MAX_VOXELS = 2**29
#: Spatial unit codes of ``xyzt_units`` (bits 0-2) and their size in mm; 0 is "unknown"
#: and taken as mm.
SPACE_UNITS_MM = {0: ("unknown", 1.0), 1: ("metres", 1000.0), 2: ("mm", 1.0), 3: ("microns", 1e-3)}
#: Time unit codes (bits 3-5) and their size in seconds; Hz, ppm and rad/s are not time.
TIME_UNITS_S = {8: 1.0, 16: 1e-3, 24: 1e-6}
#: Voxel sizes (mm) accepted after converting metres or microns.
PLAUSIBLE_MM = (0.01, 100.0)

_CHUNK = 1 << 16
_MARGIN = 1 << 20


def max_voxels(override: int | None = None) -> int:
    """The voxel limit: ``override``, else ``$NAPARI_PIX2REP_MAX_VOXELS``, else the default."""
    value: object = override
    if override is None:
        value = os.environ.get(MAX_VOXELS_ENV, "").strip() or DEFAULT_MAX_VOXELS
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if type(value) is not int or value <= 0:
        raise ValueError(f"{MAX_VOXELS_ENV} must be a positive whole number, not {value!r}.")
    return value


def format_bytes(n_bytes: float) -> str:
    """``1536`` -> ``"1.5 KiB"`` (binary units, "bytes" below 1 KiB)."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n_bytes < 1024 or unit == "PiB":
            return f"{n_bytes:.0f} {unit}" if unit == "bytes" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    raise AssertionError  # not reached


def check_declared_size(
    name: str, shape: tuple[int, ...], itemsize: int, limit: int | None = None
) -> None:
    """Raise ValueError naming the grid and its size when ``shape`` (the file's
    ``(x, y, z[, t])``) holds more than :func:`max_voxels` voxels of ``itemsize`` bytes."""
    allowed = max_voxels(limit)
    n = int(np.prod([int(s) for s in shape], dtype=object))
    if n > allowed:
        grid = " x ".join(str(int(s)) for s in shape)
        raise ValueError(
            f"{name} declares a {grid} grid ({n:,} voxels, {format_bytes(n * itemsize)} to "
            f"decode), more than the limit of {allowed:,} voxels; set {MAX_VOXELS_ENV} "
            "to a larger number to read it."
        )


def space_unit_to_mm(name: str, xyzt_units: int, zooms: list[float]) -> float:
    """The size in mm of the header's spatial unit, after checking that ``zooms`` (the
    spatial pixdim values, in that unit) make sense; ValueError otherwise."""
    code = int(xyzt_units) & 0x07
    if code not in SPACE_UNITS_MM:
        raise ValueError(
            f"{name} has an undefined spatial unit (code {code} in xyzt_units); "
            "only metres, mm and microns are understood."
        )
    unit, factor = SPACE_UNITS_MM[code]
    lo, hi = PLAUSIBLE_MM
    sizes = [abs(z) * factor for z in zooms if np.isfinite(z) and z != 0]
    if factor != 1.0 and not all(lo <= s <= hi for s in sizes):
        given = " x ".join(f"{abs(z):g}" for z in zooms)
        raise ValueError(
            f"{name} gives its voxel size as {given} {unit}, which is implausible for a "
            f"scan (allowed {lo:g} to {hi:g} mm): fix the unit in its header (xyzt_units)."
        )
    return factor


def time_unit_to_s(xyzt_units: int) -> float | None:
    """The size in seconds of the header's time unit, or None when it is not a time."""
    return TIME_UNITS_S.get(int(xyzt_units) & 0x38)


def _declared_bytes(head: bytes) -> int | None:
    """vox_offset + data size that a complete NIfTI-1/2 header ``head`` declares."""
    for order in ("<", ">"):
        sizeof = int(np.frombuffer(head[:4], f"{order}i4")[0]) if len(head) >= 4 else 0
        if sizeof == 348 and len(head) >= 348:
            dim = np.frombuffer(head[40:56], f"{order}i2").astype(np.int64)
            bitpix = int(np.frombuffer(head[72:74], f"{order}i2")[0])
            offset = float(np.frombuffer(head[108:112], f"{order}f4")[0])
        elif sizeof == 540 and len(head) >= 540:
            dim = np.frombuffer(head[16:80], f"{order}i8")
            bitpix = int(np.frombuffer(head[14:16], f"{order}i2")[0])
            offset = float(np.frombuffer(head[168:176], f"{order}i8")[0])
        else:
            continue
        ndim = int(dim[0])
        if not 1 <= ndim <= 7 or (dim[1 : ndim + 1] < 0).any() or bitpix <= 0:
            return None
        if not np.isfinite(offset) or offset < 0:
            return None
        return int(offset) + int(np.prod(dim[1 : ndim + 1], dtype=object)) * bitpix // 8
    return None


def nifti_sizeof(head: bytes) -> int | None:
    """348 or 540 when ``head`` starts like a NIfTI-1/2 header (either endianness)."""
    if len(head) < 4:
        return None
    for order in ("little", "big"):
        size = int.from_bytes(head[:4], order)
        if size in (348, 540):
            return size
    return None


def truncation(path: Path, limit: int | None = None) -> str | None:
    """Why a file nibabel could not identify looks like a cut NIfTI, or None.

    A gzip is inflated in chunks of 64 KiB (memory stays constant) and only up to the
    size its header declares (at most ``limit`` voxels of 8 bytes) plus 1 MiB.
    """
    try:
        fh = open(path, "rb")
    except OSError:
        return None
    with fh:
        if fh.read(2) != b"\x1f\x8b":
            fh.seek(0)
            head = fh.read(540)
            size = nifti_sizeof(head)
            if size is not None and len(head) < size:
                return f"its header is incomplete ({len(head)} of {size} bytes)"
            return None
        fh.seek(0)
        stream = zlib.decompressobj(16 + zlib.MAX_WBITS)
        head, total, stop_at = b"", 0, 540 + _MARGIN
        pending = b""
        while not stream.eof and total <= stop_at:
            pending = pending or fh.read(_CHUNK)
            if not pending:
                return "the gzip stream ends early"
            try:
                out = stream.decompress(pending, _CHUNK)
            except zlib.error:
                return None
            pending = stream.unconsumed_tail
            if len(head) < 540:
                head += out[: 540 - len(head)]
                declared = _declared_bytes(head)
                if declared is not None:
                    stop_at = min(declared, max_voxels(limit) * 8) + _MARGIN
            total += len(out)
    size = nifti_sizeof(head)
    if size is not None and len(head) < size:
        return f"its header is incomplete ({len(head)} of {size} bytes)"
    return None
