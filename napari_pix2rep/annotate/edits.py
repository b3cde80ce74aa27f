"""What the user's edits and a new prediction change, and where to annotate next.

The voxels a new prediction changes, the slices a user corrected, the history-recording
update that copies slices, slice positions as text, and "suggest the next slice". Arrays
are in display order, ``(z, y, x)`` or ``(t, z, y, x)``; a slice position is ``(z,)`` or
``(t, z)`` as in :func:`napari_pix2rep.annotate.annotations.annotated_slice_summary`.

Imports neither Qt nor torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def _check_same_shape(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"The layers' shapes differ: {a.shape} and {b.shape}.")


def changed_voxels(old: np.ndarray, new: np.ndarray) -> tuple[np.ndarray, ...]:
    """Indices (one array per axis) of the voxels where ``new`` differs from ``old``."""
    old, new = np.asarray(old), np.asarray(new)
    _check_same_shape(old, new)
    return np.nonzero(old != new)


def edited_slices(current: np.ndarray, reference: np.ndarray) -> list[tuple[int, ...]]:
    """Positions of the 2D slices where ``current`` differs from ``reference`` (sorted)."""
    current, reference = np.asarray(current), np.asarray(reference)
    _check_same_shape(current, reference)
    if current.ndim < 3:
        raise ValueError(f"Expected a 3D or 4D volume, not shape {current.shape}.")
    diff = (current != reference).reshape(*current.shape[:-2], -1).any(axis=-1)
    return [tuple(int(i) for i in idx) for idx in np.argwhere(diff)]


def slice_update(
    target: np.ndarray, source: np.ndarray, positions: Iterable[tuple[int, ...]]
) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """What copying the ``positions`` slices of ``source`` into ``target`` changes.

    Returns ``(indices, values)`` for a history-recording write (``Labels.data_setitem``):
    only voxels of those slices whose value differs are listed.
    """
    target, source = np.asarray(target), np.asarray(source)
    _check_same_shape(target, source)
    lead = target.ndim - 2
    mask = np.zeros(target.shape[:lead], dtype=bool)
    for pos in positions:
        pos = tuple(int(p) for p in pos)
        if len(pos) != lead:
            raise ValueError(f"A slice position needs {lead} indices, got {pos}.")
        mask[pos] = True
    if not mask.any():
        empty = tuple(np.zeros(0, dtype=np.intp) for _ in range(target.ndim))
        return empty, np.zeros(0, dtype=source.dtype)
    differs = (target != source) & mask.reshape(*mask.shape, 1, 1)
    indices = np.nonzero(differs)
    return indices, source[indices]


def format_positions(positions: Sequence[tuple[int, ...]]) -> str:
    """``[(2,), (5,)]`` -> ``"slices 2, 5"``; 4D: ``"frame 0: slices 2, 5; frame 3: slice 1"``."""
    if not positions:
        return "none"

    def run(zs: list[int]) -> str:
        word = "slice" if len(zs) == 1 else "slices"
        return f"{word} {', '.join(str(z) for z in zs)}"

    if len(positions[0]) == 1:
        return run(sorted(p[0] for p in positions))
    frames: dict[int, list[int]] = {}
    for t, z in positions:
        frames.setdefault(int(t), []).append(int(z))
    return "; ".join(f"frame {t}: {run(sorted(zs))}" for t, zs in sorted(frames.items()))


def suggest_slice(
    uncertainty: np.ndarray,
    labels: np.ndarray,
    exclude: Iterable[tuple[int, ...]] = (),
) -> tuple[tuple[int, ...], float] | None:
    """The slice to annotate next: highest mean uncertainty inside the predicted heart.

    ``uncertainty`` and ``labels`` are the prediction's (same shape); slices without any
    predicted structure and the ``exclude`` positions (already annotated) are skipped.
    Returns ``(position, mean uncertainty)`` or None when no slice qualifies.
    """
    u, lab = np.asarray(uncertainty, dtype=np.float32), np.asarray(labels)
    _check_same_shape(u, lab)
    lead = lab.shape[:-2]
    heart = (lab > 0).reshape(*lead, -1)
    count = heart.sum(axis=-1)
    total = np.where(heart, u.reshape(*lead, -1), 0.0).sum(axis=-1)
    score = np.where(count > 0, total / np.maximum(count, 1), -1.0)
    for pos in exclude:
        pos = tuple(int(p) for p in pos)
        if len(pos) == len(lead):
            score[pos] = -1.0
    if score.max() < 0:
        return None
    best = np.unravel_index(int(np.argmax(score)), score.shape)
    return tuple(int(i) for i in best), float(score[best])
