"""Annotated slices from (image, labels) pairs: what a few painted slices teach.

Two modes (DESIGN.md, data model):

``full`` (default)
    a 2D slice with any non-zero voxel is fully annotated, 0 being background there;
    all-zero slices are unannotated.
``sparse`` (scribbles)
    0 means "unknown"; ``background_value`` marks background; other values are classes.

Targets use the class indices 0..K-1 and ``-1`` for pixels that teach nothing. Arrays
are in display order, ``(z, y, x)`` or ``(t, z, y, x)``; a slice is addressed by its
flat index in ``data.reshape(-1, H, W)``. Only the labels decide what is annotated;
the image is never touched here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE = -1
DEFAULT_CLASSES = ("background", "RV", "MYO", "LV")


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
) -> list[tuple[int, np.ndarray]]:
    """``(flat slice index, target (H, W))`` for every annotated slice of ``labels``."""
    if mode not in ("full", "sparse"):
        raise AnnotationError(f"Unknown annotation mode {mode!r}: use 'full' or 'sparse'.")
    lab = np.asarray(labels).reshape(-1, *labels.shape[-2:]).astype(np.int64)
    allowed = set(range(n_classes))
    if mode == "sparse":
        if background_value is None:
            raise AnnotationError("Sparse annotations need the label value that means background.")
        allowed = (allowed - {0}) | {background_value}
    values = set(np.unique(lab).tolist()) - {0}
    unknown = sorted(values - allowed)
    if unknown:
        raise AnnotationError(
            f"{name}: label values {unknown} are not among the {n_classes} classes "
            f"(allowed: 0-{n_classes - 1})."
        )
    out = []
    for i, s in enumerate(lab):
        if not s.any():
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
) -> list[AnnotatedSlice]:
    """Annotated slices of several ``(image, labels)`` pairs, validated.

    Raises :class:`AnnotationError` when labels are off the image grid, hold values
    outside the classes, no slice is annotated, or only background is annotated.
    """
    names = names or [f"image {i + 1}" for i in range(len(pairs))]
    out: list[AnnotatedSlice] = []
    for k, ((image, labels), name) in enumerate(zip(pairs, names)):
        image, labels = np.asarray(image), np.asarray(labels)
        _check_pair(image, labels, name)
        for index, target in slice_targets(labels, n_classes, mode, background_value, name):
            out.append(AnnotatedSlice(k, index, target))
    if not out:
        raise AnnotationError("No annotated slice: paint at least one slice first.")
    if not any((a.target > 0).any() for a in out):
        raise AnnotationError(
            "Only background is annotated: paint at least one structure (e.g. the LV)."
        )
    return out


def annotated_slice_summary(labels: np.ndarray) -> list[tuple[int, ...]]:
    """Positions of the annotated slices: ``(z,)`` for 3D or ``(t, z)`` for 4D labels."""
    lab = np.asarray(labels)
    painted = lab.reshape(*lab.shape[:-2], -1).any(axis=-1)
    return [tuple(int(i) for i in idx) for idx in np.argwhere(painted)]
