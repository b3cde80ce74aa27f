import math

import numpy as np
import pytest

from napari_pix2rep.measure.metrics import (
    cardiac_measures,
    cine_measures,
    dice_per_class,
    structure_volumes,
    volume_curve,
)


def test_dice_known_values():
    gt = np.zeros((1, 4, 4), np.uint8)
    pred = gt.copy()
    gt[0, :2, :2] = 3  # 4 voxels
    pred[0, :2, :1] = 3  # 2 voxels, both right
    d = dice_per_class(pred, gt, [1, 3])
    assert d[3] == pytest.approx(2 * 2 / 6)
    assert math.isnan(d[1])


def test_volumes_ef_and_mass_in_physical_units():
    spacing = (10.0, 2.0, 1.0)  # 20 mm^3 = 0.02 mL per voxel
    ed = np.zeros((2, 10, 10), np.uint8)
    es = ed.copy()
    ed[:, :5, :10] = 3  # 100 voxels = 2 mL
    es[:, :5, :5] = 3  # 50 voxels = 1 mL
    ed[:, 5:, :5] = 2  # 50 voxels myocardium = 1 mL -> 1.05 g
    ed[:, 5:, 5:] = 1
    es[:, 5:, 5:7] = 1
    assert structure_volumes(ed, spacing)["LV_ml"] == pytest.approx(2.0)
    m = cardiac_measures(ed, es, spacing)
    assert m.LV_EDV == pytest.approx(2.0) and m.LV_ESV == pytest.approx(1.0)
    assert m.LV_EF == pytest.approx(50.0)
    assert m.RV_EF == pytest.approx(100 * (1.0 - 0.4) / 1.0)
    assert m.MYO_mass == pytest.approx(1.05)


def test_cine_picks_largest_and_smallest_lv_frames():
    spacing = (1.0, 1.0, 1.0)
    seg = np.zeros((4, 1, 10, 10), np.uint8)
    for t, n in enumerate([30, 50, 10, 20]):
        seg[t].flat[:n] = 3
    m = cine_measures(seg, spacing)
    assert (m.ed_frame, m.es_frame) == (1, 2)
    assert m.LV_EF == pytest.approx(80.0)
    assert [c["LV_ml"] for c in volume_curve(seg, spacing)] == pytest.approx(
        [0.03, 0.05, 0.01, 0.02]
    )


def test_ed_es_frames_from_the_lv_curve_and_overrides():
    from napari_pix2rep.evaluation.phantom import make_phantom
    from napari_pix2rep.measure.metrics import ed_es_frames

    ph = make_phantom(n_slices=4, size=(48, 48), n_frames=6, seed=2)
    spatial = ph.spacing[1:]
    lv = [c["LV_ml"] for c in volume_curve(ph.labels, spatial)]
    assert ed_es_frames(ph.labels, spatial) == (int(np.argmax(lv)), int(np.argmin(lv))) == (0, 2)
    shuffled = ph.labels[[3, 4, 0, 5, 2, 1]]  # ED now at frame 2, ES at frame 4
    assert ed_es_frames(shuffled, spatial) == (2, 4)
    m = cine_measures(shuffled, spatial, es=5)
    assert (m.ed_frame, m.es_frame) == (2, 5)
    assert m.LV_ESV == pytest.approx(lv[1])
    with pytest.raises(ValueError, match="The ES frame 6 is not among the frames 0 to 5."):
        cine_measures(shuffled, spatial, es=6)
