"""The dock's annotation-loop rules (napari_pix2rep.annotate.loop): grids, the painted heart,
painted slices carried to another phase or frame, background-only slices (the recipe applying them:
tests/segment/test_recipe.py)."""

from __future__ import annotations

import numpy as np

from napari_pix2rep.annotate.loop import (
    annotation_summary,
    background_of,
    carry_plan,
    cine_carry_plan,
    corrected_background,
    heart_paint,
    most_different_frame,
    on_same_grid,
    painted_slices,
)
from napari_pix2rep.evaluation.phantom import make_phantom

# --------------------------------------------------------------------------- plain rules


def test_corrections_mark_emptied_slices_background_only():
    seg = np.zeros((2, 3, 8, 8), np.uint8)
    seg[0, 1, 2:4, 2:4] = 3  # a corrected slice that holds labels
    # frame 1, slice 2 emptied by the user; (0, 1) painted: its old mark goes
    out = corrected_background(seg, [(0, 1), (1, 2)], {1, 4})
    assert out == {4, 1 * 3 + 2}
    assert corrected_background(seg[0], [(1,), (2,)], set()) == {2}


def test_annotation_summary_lists_background_only_slices():
    lab = np.zeros((5, 8, 8), np.uint8)
    lab[1, 2, 2] = 1
    # 1 is listed but painted: it counts as painted
    assert annotation_summary(lab, {1, 4}) == ([(1,), (4,)], [(4,)])
    assert background_of({"pix2rep_background_slices": [4, 9, -1]}, 5) == {4}
    assert background_of(None, 5) == set()


def test_carry_plan_skips_what_the_target_annotated():
    ed = np.zeros((6, 8, 8), np.uint8)
    ed[[1, 3, 4], 2, 2] = 2
    es = np.zeros_like(ed)
    es[3, 1, 1] = 1
    other = np.zeros_like(ed)
    other[[1, 5], 1, 1] = 1
    assert painted_slices(ed) == [1, 3, 4]
    # 3 painted in ES itself, 4 background-only there; 1 taken from the first source
    assert carry_plan(es, {4}, [ed, other]) == [(0, [1]), (1, [5])]
    assert carry_plan(None, set(), [np.zeros_like(ed)]) == []


def test_cine_carry_goes_to_the_most_different_frame():
    cine = make_phantom(n_slices=3, size=(48, 48), n_frames=6, seed=1)
    assert most_different_frame(cine.image, 0) == cine.es_frame
    lab = np.zeros(cine.image.shape, np.uint8)
    assert cine_carry_plan(cine.image, lab) is None
    lab[0, [0, 2]] = cine.labels[0, [0, 2]]
    lab[4, 1] = cine.labels[4, 1]
    g = cine.es_frame
    assert cine_carry_plan(cine.image, lab) == (0, g, [0, 2])
    # slice 2 of frame g is background-only there: not carried
    assert cine_carry_plan(cine.image, lab, {g * 3 + 2}) == (0, g, [0])
    assert cine_carry_plan(cine.image[:1], lab[:1]) is None


def test_grid_and_paint_rules():
    a = np.eye(4)
    b = a.copy()
    b[0, 3] = 5.0
    assert on_same_grid((2, 8, 8), (10, 1.5, 1.5), a, (2, 8, 8), (10, 1.5, 1.5), None)
    assert not on_same_grid((2, 8, 8), (10, 1.5, 1.5), a, (2, 8, 8), (10, 1.5, 1.5), b)
    assert not on_same_grid((2, 8, 8), (10, 1.5, 1.5), a, (2, 8, 9), (10, 1.5, 1.5), a)
    own = np.zeros((2, 8, 8), np.uint8)
    other = own.copy()
    other[1, 3, 4] = 1
    assert heart_paint([own, other]).shape == (8, 8) and heart_paint([own, other])[3, 4]
    own[0, 1, 1] = 2
    cine = np.zeros((3, 2, 8, 8), np.uint8)
    cine[2, 0, 5, 5] = 3
    union = heart_paint([own, other, cine])  # every slice and frame of the stack
    assert union.sum() == 3 and union[1, 1] and union[3, 4] and union[5, 5]
    assert heart_paint([np.zeros_like(own)]) is None and heart_paint([]) is None
