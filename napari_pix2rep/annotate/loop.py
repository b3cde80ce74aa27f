"""The dock's annotation-loop rules as plain functions: what trains, what is carried.

- which images lie on one grid (phases of the same stack, :func:`on_same_grid`) and
  where their paint puts the heart (:func:`heart_paint`);
- which painted slices are carried onto a target by registration
  (:func:`carry_plan`, for a 3D target and another phase; :func:`cine_carry_plan`, for a
  cine painted in one frame: to the frame most different from it, about ES);
- which slices "Use corrections" marks background-only (:func:`corrected_background`)
  and how the annotated-slice list shows them (:func:`annotation_summary`).

Arrays are in display order, ``(z, y, x)`` or ``(t, z, y, x)``; a background-only slice is
a flat index into ``labels.reshape(-1, H, W)`` (:mod:`napari_pix2rep.annotate.annotations`). The
layer metadata key holding that list is :data:`BACKGROUND_KEY`. Imports neither Qt nor
torch. The Segment recipe that applies these rules is :mod:`napari_pix2rep.segment.recipe`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from napari_pix2rep.annotate.annotations import annotated_slice_summary

#: Annotation-layer metadata: the flat indices of its background-only slices.
BACKGROUND_KEY = "pix2rep_background_slices"


def background_of(metadata: Mapping[str, Any] | None, n_slices: int) -> set[int]:
    """The background-only slices a layer's ``metadata`` lists (valid flat indices only)."""
    listed = (metadata or {}).get(BACKGROUND_KEY) or []
    return {int(i) for i in listed if 0 <= int(i) < n_slices}


def painted_slices(labels: np.ndarray) -> list[int]:
    """Flat indices of the slices of ``labels`` holding any non-zero voxel."""
    lab = np.asarray(labels)
    return [int(i) for i in np.flatnonzero(lab.reshape(-1, *lab.shape[-2:]).any(axis=(1, 2)))]


def on_same_grid(
    shape_a: Sequence[int],
    spacing_a: Sequence[float],
    affine_a: Any,
    shape_b: Sequence[int],
    spacing_b: Sequence[float],
    affine_b: Any,
) -> bool:
    """Whether two volumes are phases of one stack: same shape, spacing and (when both
    are known) the same affine."""
    if tuple(shape_a) != tuple(shape_b):
        return False
    if not np.allclose(spacing_a, spacing_b, rtol=1e-3):
        return False
    if affine_a is None or affine_b is None:
        return True
    return bool(np.allclose(np.asarray(affine_a), np.asarray(affine_b), atol=1e-3))


def heart_paint(annotations: Iterable[np.ndarray]) -> np.ndarray | None:
    """The painted foreground ``(y, x)`` of a stack's annotations (same in-plane size),
    which localises its heart: the union over their slices and frames; None when nothing
    is painted."""
    union = None
    for lab in annotations:
        fg = (np.asarray(lab) > 0).reshape(-1, *np.shape(lab)[-2:]).any(axis=0)
        union = fg if union is None else union | fg
    return union if union is not None and union.any() else None


def carry_plan(
    own: np.ndarray | None,
    own_background: Collection[int],
    sources: Sequence[np.ndarray],
) -> list[tuple[int, list[int]]]:
    """For a 3D target: ``(source index, slices)`` to carry from each other phase.

    A slice ``z`` painted in a source is carried when the target has not annotated it
    itself (painted, or listed in ``own_background``) and no earlier source carries it;
    sources with nothing to carry are left out. ``own`` is the target's ``(z, y, x)``
    annotation (None: none), ``sources`` the other phases' annotations on its grid.
    """
    taken = set(own_background) | (set(painted_slices(own)) if own is not None else set())
    plan = []
    for k, lab in enumerate(sources):
        todo = [z for z in painted_slices(lab) if z not in taken]
        if todo:
            plan.append((k, todo))
            taken.update(todo)
    return plan


def most_different_frame(cine: np.ndarray, frame: int) -> int:
    """The frame of ``cine`` ``(t, z, y, x)`` with the largest mean |difference| from ``frame``.

    In a cine painted at ED this is about ES. Frames are compared as float32.
    """
    ref = np.asarray(cine[frame], dtype=np.float32)
    diffs = [
        -1.0 if t == frame else float(np.mean(np.abs(np.asarray(f, dtype=np.float32) - ref)))
        for t, f in enumerate(cine)
    ]
    return int(np.argmax(diffs))


def cine_carry_plan(
    cine: np.ndarray, labels: np.ndarray, background: Collection[int] = ()
) -> tuple[int, int, list[int]] | None:
    """For a cine painted in some frames: ``(source frame f, target frame g, slices z)``.

    ``f`` is the frame with the most painted slices (the first on a tie), ``g`` the frame
    most different from it (:func:`most_different_frame`), and the slices are those
    painted in ``f`` that ``g`` has not annotated itself (painted or background-only,
    ``background`` being flat indices of the ``(t, z, y, x)`` labels). None when nothing
    is painted, the cine has one frame, or there is nothing to carry.
    """
    lab = np.asarray(labels)
    if lab.ndim != 4 or lab.shape[0] < 2:
        return None
    per_frame = lab.reshape(*lab.shape[:2], -1).any(axis=-1)  # (t, z)
    if not per_frame.any():
        return None
    f = int(np.argmax(per_frame.sum(axis=1)))
    g = most_different_frame(cine, f)
    nz = lab.shape[1]
    done = {z for z in range(nz) if per_frame[g, z] or g * nz + z in set(background)}
    todo = [int(z) for z in np.flatnonzero(per_frame[f]) if z not in done]
    return (f, g, todo) if todo else None


def corrected_background(
    segmentation: np.ndarray,
    positions: Iterable[tuple[int, ...]],
    background: Collection[int],
) -> set[int]:
    """Background-only slices after "Use corrections" copied ``positions``.

    A corrected slice left all 0 in ``segmentation`` (a false positive erased) becomes
    background-only; a corrected slice holding labels is painted, so it leaves the list.
    ``background`` is the current list (flat indices); returns the new one.
    """
    seg = np.asarray(segmentation)
    lead = seg.shape[:-2]
    out = set(background)
    for pos in positions:
        flat = int(np.ravel_multi_index(tuple(int(p) for p in pos), lead))
        if np.any(seg[tuple(pos)]):
            out.discard(flat)
        else:
            out.add(flat)
    return out


def annotation_summary(
    labels: np.ndarray, background: Collection[int]
) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
    """``(annotated, background_only)`` slice positions, ``(z,)`` or ``(t, z)``: every
    annotated slice (painted or background-only), and the background-only ones (listed
    and still empty; a listed slice that holds paint counts as painted)."""
    lab = np.asarray(labels)
    painted = set(painted_slices(lab))
    empty = sorted(i for i in background if i not in painted)
    lead = lab.shape[:-2]
    positions = annotated_slice_summary(lab, empty)
    only = [tuple(int(v) for v in np.unravel_index(i, lead)) for i in empty]
    return positions, only
