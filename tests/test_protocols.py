"""Evaluation protocols and the ACDC-style dataset helpers, on synthetic cases."""

import numpy as np
import pytest

from napari_pix2rep.acdc import list_cases, split_validation
from napari_pix2rep.phantom import write_phantom_dataset
from napari_pix2rep.protocols import LoadedCase, few_slice_given, score, summarise


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    root = tmp_path_factory.mktemp("acdc_like")
    write_phantom_dataset(root, n_cases=5, n_slices=6, size=(64, 64), n_frames=6)
    return list_cases(root)


def test_cases_and_validation_split(cases):
    assert [c.id for c in cases] == [f"case{i:03d}" for i in range(1, 6)]
    pool, val = split_validation(cases)
    assert [c.number for c in val] == [5] and len(pool) == 4
    loaded = LoadedCase.load(val[0])
    assert loaded.ed.shape == loaded.ed_gt.shape and loaded.ed_gt.is_labels


def test_list_cases_refuses_a_folder_without_cases(tmp_path):
    with pytest.raises(FileNotFoundError, match="No ACDC-style cases"):
        list_cases(tmp_path)


def test_few_slice_picks_the_lv_slices_at_thirds():
    gt = np.zeros((10, 4, 4), np.uint8)
    gt[1:10, 0, 0] = 3  # LV on slices 1..9: n = 9 -> positions 3 and 6
    assert few_slice_given(gt) == [4, 7]
    with pytest.raises(ValueError, match="No slice contains the LV"):
        few_slice_given(np.zeros((3, 4, 4), np.uint8))


def test_score_masks_the_given_slices():
    gt = np.zeros((3, 4, 4), np.uint8)
    gt[:, :2] = 3
    pred = gt.copy()
    pred[0] = 0  # slice 0 wrong
    keep = np.ones(gt.shape, bool)
    keep[0] = False
    assert score(pred, gt, keep)["LV"] == pytest.approx(1.0)
    assert score(pred, gt)["LV"] < 1.0
    rows = [{"RV": float("nan"), "MYO": 0.5, "LV": 1.0, "mean": 0.75}]
    assert summarise(rows)["LV"] == 1.0 and np.isnan(summarise(rows)["RV"])
