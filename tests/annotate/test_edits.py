"""Tests of napari_pix2rep.annotate.edits."""

from __future__ import annotations

import numpy as np
import pytest

from napari_pix2rep.annotate.edits import (
    changed_voxels,
    edited_slices,
    format_positions,
    slice_update,
    suggest_slice,
)


def test_changed_voxels_and_edited_slices():
    old = np.zeros((2, 3, 4, 4), np.uint8)
    new = old.copy()
    new[1, 2, 0, 1] = 3
    new[0, 0, 3, 3] = 1
    idx = changed_voxels(old, new)
    assert sorted(zip(*idx)) == [(0, 0, 3, 3), (1, 2, 0, 1)]
    assert edited_slices(new, old) == [(0, 0), (1, 2)]
    assert edited_slices(new[0], old[0]) == [(0,)]
    with pytest.raises(ValueError, match="shapes differ"):
        edited_slices(new, old[0])


def test_slice_update_copies_only_the_given_slices():
    target = np.zeros((4, 5, 5), np.uint8)
    target[0] = 2
    source = np.ones((4, 5, 5), np.uint8)
    indices, values = slice_update(target, source, [(0,), (3,)])
    out = target.copy()
    out[indices] = values
    assert (out[0] == 1).all() and (out[3] == 1).all()
    assert not out[1].any() and not out[2].any()
    assert indices[0].size == 50  # only differing voxels are listed
    empty, vals = slice_update(target, source, [])
    assert empty[0].size == 0 and vals.size == 0
    with pytest.raises(ValueError, match="indices"):
        slice_update(target, source, [(0, 1)])


def test_format_positions():
    assert format_positions([]) == "none"
    assert format_positions([(5,), (2,)]) == "slices 2, 5"
    assert format_positions([(4,)]) == "slice 4"
    assert format_positions([(0, 2), (3, 1), (0, 5)]) == "frame 0: slices 2, 5; frame 3: slice 1"


def test_suggest_slice_prefers_uncertain_unannotated_heart():
    labels = np.zeros((4, 8, 8), np.uint8)
    labels[:3, 2:6, 2:6] = 3  # no heart on slice 3
    u = np.zeros((4, 8, 8), np.float32)
    u[0, 2:6, 2:6] = 0.9
    u[1, 2:6, 2:6] = 0.5
    u[3] = 1.0  # uncertain but no predicted heart: skipped
    assert suggest_slice(u, labels) == ((0,), pytest.approx(0.9))
    assert suggest_slice(u, labels, exclude=[(0,)])[0] == (1,)
    assert suggest_slice(u, labels, exclude=[(0,), (1,), (2,)]) is None
    u4 = np.stack([u, u * 0.5])
    assert suggest_slice(u4, np.stack([labels, labels]), exclude=[(0, 0)])[0] == (0, 1)
