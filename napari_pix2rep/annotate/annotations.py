"""Annotated slices from (image, labels) pairs: what a few painted slices teach.

Two modes (docs/annotations.md):

``full`` (default)
    a 2D slice with any non-zero voxel is fully annotated, 0 being background there;
    all-zero slices are unannotated. ``IGNORE`` (-1) inside an annotated slice marks
    pixels that teach nothing (used for slices propagated from another phase, whose
    boundaries are uncertain; label files on disk never hold it).
``sparse`` (scribbles)
    0 means "unknown"; ``background_value`` marks background; other values are classes.

**Background-only slices** (full mode): an all-zero slice cannot say "I looked, there
is no heart here" by its values, so such slices are listed explicitly
(``background_slices``: flat slice indices). In files the list lives in a sidecar JSON
beside the label map (:func:`sidecar_path`, docs/annotations.md); a label file without a
sidecar has no background-only slices (its all-zero slices are not annotated).

Targets use the class indices 0..K-1 and ``-1`` for pixels that teach nothing. Arrays
are in display order, ``(z, y, x)`` or ``(t, z, y, x)``; a slice is addressed by its
flat index in ``data.reshape(-1, H, W)``. Only the labels decide what is annotated;
the image is never touched here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_pix2rep.core.classes import DEFAULT_CLASSES, IGNORE
from napari_pix2rep.io.datafiles import nifti_stem
from napari_pix2rep.io.outputs import atomic_write


class AnnotationError(ValueError):
    """Annotations that cannot be used, with one sentence saying why."""


@dataclass
class AnnotatedSlice:
    """One annotated 2D slice: which image, which slice, and its target ``(H, W)`` int64."""

    image: int
    index: int
    target: np.ndarray


def _check_pair(image: np.ndarray, labels: np.ndarray, name: str) -> None:
    if image.ndim not in (3, 4):
        raise AnnotationError(f"{name}: the image must be 3D or 4D, not {image.ndim}D.")
    if labels.shape != image.shape:
        raise AnnotationError(
            f"{name}: the labels {labels.shape} are not on the image grid {image.shape}."
        )
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.isfinite(labels)) or not np.all(np.mod(labels, 1) == 0):
            raise AnnotationError(f"{name}: the labels must be whole numbers.")


def slice_targets(
    labels: np.ndarray,
    n_classes: int,
    mode: str = "full",
    background_value: int | None = None,
    name: str = "labels",
    background_slices: Collection[int] = (),
) -> list[tuple[int, np.ndarray]]:
    """``(flat slice index, target (H, W))`` for every annotated slice of ``labels``.

    In full mode the all-zero slices listed in ``background_slices`` (flat indices) are
    annotated as background only.
    """
    if mode not in ("full", "sparse"):
        raise AnnotationError(f"Unknown annotation mode {mode!r}: use 'full' or 'sparse'.")
    lab = np.asarray(labels).reshape(-1, *labels.shape[-2:]).astype(np.int64)
    allowed = set(range(n_classes)) | {IGNORE}
    if mode == "sparse":
        if background_value is None:
            raise AnnotationError("Sparse annotations need the label value that means background.")
        allowed = (allowed - {0, IGNORE}) | {background_value}
    values = set(np.unique(lab).tolist()) - {0}
    unknown = sorted(values - allowed)
    if unknown:
        raise AnnotationError(
            f"{name}: label values {unknown} are not among the {n_classes} classes "
            f"(allowed: 0-{n_classes - 1})."
        )
    if background_slices and mode != "full":
        raise AnnotationError("Background-only slices need full annotations, not scribbles.")
    bad = sorted(i for i in background_slices if not 0 <= i < len(lab))
    if bad:
        raise AnnotationError(
            f"{name}: background-only slices {bad} are outside its {len(lab)} slices."
        )
    background = set(background_slices)
    out = []
    for i, s in enumerate(lab):
        if not s.any() and i not in background:
            continue
        if mode == "full":
            target = s.copy()
        else:
            target = np.where(s == 0, IGNORE, np.where(s == background_value, 0, s))
        out.append((i, target))
    return out


def collect_annotations(
    pairs: list[tuple[np.ndarray, np.ndarray]],
    n_classes: int = len(DEFAULT_CLASSES),
    mode: str = "full",
    background_value: int | None = None,
    names: list[str] | None = None,
    background_slices: Sequence[Collection[int]] | None = None,
) -> list[AnnotatedSlice]:
    """Annotated slices of several ``(image, labels)`` pairs, validated.

    ``background_slices`` gives, per pair, the flat indices of slices annotated as
    background only (see :func:`slice_targets`). Raises :class:`AnnotationError` when
    labels are off the image grid, hold values outside the classes, no slice is
    annotated, or only background is annotated.
    """
    names = names or [f"image {i + 1}" for i in range(len(pairs))]
    background = list(background_slices or [])
    background += [()] * (len(pairs) - len(background))
    out: list[AnnotatedSlice] = []
    for k, ((image, labels), name) in enumerate(zip(pairs, names)):
        image, labels = np.asarray(image), np.asarray(labels)
        _check_pair(image, labels, name)
        found = slice_targets(labels, n_classes, mode, background_value, name, background[k])
        for index, target in found:
            out.append(AnnotatedSlice(k, index, target))
    if not out:
        raise AnnotationError("No annotated slice: paint at least one slice first.")
    if not any((a.target > 0).any() for a in out):
        raise AnnotationError(
            "Only background is annotated: paint at least one structure (e.g. the LV)."
        )
    return out


def annotated_slice_summary(
    labels: np.ndarray, background_slices: Collection[int] = ()
) -> list[tuple[int, ...]]:
    """Positions of the annotated slices: ``(z,)`` for 3D or ``(t, z)`` for 4D labels.

    Painted slices and the listed background-only ones (flat indices), in order.
    """
    lab = np.asarray(labels)
    flat = lab.reshape(-1, lab.shape[-2] * lab.shape[-1]).any(axis=-1)
    flat[[i for i in background_slices if 0 <= i < flat.size]] = True
    return [tuple(int(i) for i in idx) for idx in np.argwhere(flat.reshape(lab.shape[:-2]))]


# -- background-only slices in files -----------------------------------------------------
SIDECAR_FORMAT = "napari-pix2rep/annotated-slices"
SIDECAR_VERSION = 1
SIDECAR_SUFFIX = ".slices.json"


def sidecar_path(labels_path: str | os.PathLike[str]) -> Path:
    """``heart_labels.nii.gz`` -> ``heart_labels.slices.json`` (same folder)."""
    p = Path(labels_path)
    return p.with_name(nifti_stem(p) + SIDECAR_SUFFIX)


def flat_positions(positions: Collection[Sequence[int]], shape: tuple[int, ...]) -> set[int]:
    """``(z,)`` / ``(t, z)`` slice positions -> flat indices for an array of ``shape``."""
    lead = shape[:-2]
    out = set()
    for pos in positions:
        pos = tuple(int(v) for v in pos)
        if len(pos) != len(lead) or any(not 0 <= v < n for v, n in zip(pos, lead)):
            raise AnnotationError(f"Slice position {list(pos)} is outside the grid {lead}.")
        out.add(int(np.ravel_multi_index(pos, lead)))
    return out


def read_background_slices(
    labels_path: str | os.PathLike[str], shape: tuple[int, ...]
) -> set[int]:
    """Flat indices of the background-only slices the sidecar lists (empty if none).

    ``shape`` is the label map's array shape (display order). A sidecar written for
    another grid, not of our format or version, or with anything but whole numbers
    where the format has them, raises :class:`AnnotationError` (one sentence).
    """
    path = sidecar_path(labels_path)
    if not path.exists():
        return set()
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AnnotationError(f"{path.name} is not a readable slice list ({exc}).") from None
    if not isinstance(doc, dict) or doc.get("format") != SIDECAR_FORMAT:
        raise AnnotationError(f"{path.name} is not a {SIDECAR_FORMAT} file.")
    version = doc.get("version", SIDECAR_VERSION)
    if not _whole(version) or not 1 <= version <= SIDECAR_VERSION:
        raise AnnotationError(
            f"{path.name} has version {json.dumps(version)}; this napari-pix2rep reads "
            f"version {SIDECAR_VERSION}."
        )
    grid = doc.get("shape")
    if not isinstance(grid, list) or not all(_whole(n) and n >= 0 for n in grid):
        raise AnnotationError(
            f"{path.name}: 'shape' must be the label map's array shape, a list of whole "
            f"numbers, not {json.dumps(grid)}."
        )
    if grid != list(shape):
        raise AnnotationError(f"{path.name} was written for a grid {grid}, not {list(shape)}.")
    positions = doc.get("background_only", [])
    if not isinstance(positions, list) or not all(
        isinstance(p, list) and all(_whole(v) for v in p) for p in positions
    ):
        raise AnnotationError(
            f"{path.name}: 'background_only' must be a list of slice positions, each a "
            "list of whole numbers ([z] or [t, z])."
        )
    return flat_positions(positions, tuple(shape))


def _whole(value: object) -> bool:
    """True for a JSON whole number (an ``int``; ``true``, ``0.9`` and ``Infinity`` are not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def write_background_slices(
    labels_path: str | os.PathLike[str], flat: Collection[int], shape: tuple[int, ...]
) -> Path | None:
    """Write (atomically) or remove the sidecar of ``labels_path``; its path, or None."""
    path = sidecar_path(labels_path)
    if not flat:
        path.unlink(missing_ok=True)
        return None
    lead = shape[:-2]
    positions = [[int(v) for v in np.unravel_index(i, lead)] for i in sorted(flat)]
    doc = {
        "format": SIDECAR_FORMAT,
        "version": SIDECAR_VERSION,
        "shape": [int(n) for n in shape],
        "background_only": positions,
    }
    text = json.dumps(doc, indent=1) + "\n"
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))
