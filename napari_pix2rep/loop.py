"""The dock's annotation-loop rules as plain functions: what trains, what is carried.

- which annotations lie on the target's grid (other phases of the same stack) and so
  localise the heart (:func:`on_same_grid`, :func:`heart_paint`);
- which painted slices are carried onto the target by registration
  (:func:`carry_plan`, for a 3D target and another phase; :func:`cine_carry_plan`, for a
  cine painted in one frame: to the frame most different from it, about ES), and which
  phases' predictions a 3D target's is fused with (:func:`fusion_sources`);
- which slices "Use corrections" marks background-only (:func:`corrected_background`)
  and how the annotated-slice list shows them (:func:`annotation_summary`).

Arrays are in display order, ``(z, y, x)`` or ``(t, z, y, x)``; a background-only slice is
a flat index into ``labels.reshape(-1, H, W)`` (:mod:`napari_pix2rep.annotations`). The
layer metadata key holding that list is :data:`BACKGROUND_KEY`. Imports neither Qt nor
torch.
"""

from __future__ import annotations

from collections.abc import Collection, Generator, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .annotations import annotated_slice_summary
from .progress import Progress, StopCheck

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


def heart_paint(own: np.ndarray | None, others: Iterable[np.ndarray]) -> np.ndarray | None:
    """Painted foreground ``(..., y, x)`` that localises the target's heart, or None.

    The target's own annotation when it holds paint, else the union of the painted
    voxels of the other annotations on its grid (``others``, same in-plane size).
    """
    if own is not None and np.any(own):
        return np.asarray(own) > 0
    union = None
    for lab in others:
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


# -- used by jobs.segment_job ------------------------------------------------------------
def heart_region(
    pairs: Sequence[tuple[np.ndarray, Sequence[float], np.ndarray]],
    target: tuple[np.ndarray, Sequence[float]],
    own: int | None,
    grid: Sequence[int],
) -> Any:
    """The target's :class:`~napari_pix2rep.localise.HeartRegion` (None: nothing finds it)."""
    from .localise import locate_heart

    image = np.asarray(target[0])
    paint = heart_paint(pairs[own][2] if own is not None else None, [pairs[k][2] for k in grid])
    others = [np.asarray(pairs[k][0]) for k in grid] if image.ndim == 3 else []
    return locate_heart(image, tuple(target[1]), annotation=paint, other_frames=others)


def grid_pairs(
    pairs: Sequence[tuple[np.ndarray, Sequence[float], np.ndarray]],
    target: tuple[np.ndarray, Sequence[float]],
    own: int | None,
    on_grid: Sequence[bool] | None,
) -> list[int]:
    """Indices of the pairs (not ``own``) that are other phases on the target's grid."""
    image, spacing = target
    out = []
    for k, (img, sp, _) in enumerate(pairs):
        if k == own:
            continue
        same = (
            on_grid[k]
            if on_grid is not None
            else on_same_grid(np.shape(img), sp, None, np.shape(image), spacing, None)
        )
        if same:
            out.append(k)
    return out


def fusion_sources(
    pairs: Sequence[tuple[np.ndarray, Sequence[float], np.ndarray]],
    target: tuple[np.ndarray, Sequence[float]],
    grid: Sequence[int],
) -> list[int]:
    """The pairs a 3D target's prediction is fused with: the other phases of its stack
    (``grid``, from :func:`grid_pairs`) holding painted slices, not the target's own image
    again; none for a cine."""
    image = np.asarray(target[0])
    if image.ndim != 3:
        return []
    return [
        k for k in grid if np.asarray(pairs[k][2]).any() and not np.array_equal(pairs[k][0], image)
    ]


def carry_iter(
    pairs: Sequence[tuple[np.ndarray, Sequence[float], np.ndarray]],
    target: tuple[np.ndarray, Sequence[float]],
    own: int | None,
    background: Sequence[Collection[int]],
    grid: Sequence[int],
    n_classes: int,
    region: Any,
    should_stop: StopCheck,
) -> Generator[Progress, None, list[tuple[np.ndarray, tuple[float, ...], np.ndarray]] | None]:
    """Painted slices carried onto the target (:mod:`napari_pix2rep.loop` decides which),
    one registration per slice: extra ``(image, spacing, labels)`` pairs, None if stopped.

    A 3D target gets the other phases' painted slices it has not annotated itself; a cine
    painted in frame f gets them in the frame most different from f.
    """
    from .preprocess import normalize_intensity
    from .propagate import carry_slice

    image, spacing = np.asarray(target[0]), tuple(float(s) for s in target[1])
    own_labels = np.asarray(pairs[own][2]) if own is not None else None
    own_bg = set(background[own]) if own is not None else set()
    jobs = []  # (source volume, target volume, source labels, slices, frame, where)
    if image.ndim == 4 and own_labels is not None:
        plan = cine_carry_plan(image, own_labels, own_bg)
        if plan is not None:
            f, g, todo = plan
            jobs.append((image[f], image[g], own_labels[f], todo, g, f"to frame {g}"))
    elif image.ndim == 3:
        sources = [np.asarray(pairs[k][2]) for k in grid]
        for j, todo in carry_plan(own_labels, own_bg, sources):
            src = np.asarray(pairs[grid[j]][0])
            jobs.append((src, image, sources[j], todo, None, "to this image"))
    extra = []
    total = sum(len(todo) for *_, todo, _, _ in jobs)
    done = 0
    for src, dst, lab, todo, frame, where in jobs:
        src_n, dst_n = normalize_intensity(src), normalize_intensity(dst)  # once per pair
        carried = np.zeros(lab.shape, dtype=np.int64)
        word = "slice" if len(todo) == 1 else "slices"
        for z in todo:
            msg = f"Carrying {len(todo)} painted {word} {where}"
            yield Progress("carry", done, total, message=msg)
            if should_stop():
                return None
            carried[z] = carry_slice(src_n[z], dst_n[z], lab[z], n_classes, region)
            done += 1
        sp = spacing[1:] if frame is not None else spacing
        extra.append((dst, sp, carried))
    if jobs:
        yield Progress("carry", total, total, message=f"Carried {total} painted slices")
    return extra
