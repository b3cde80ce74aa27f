"""Evaluation protocols and the ACDC-style dataset helpers, on synthetic cases."""

import numpy as np
import pytest

import napari_pix2rep.evaluation.protocols as protocols
from napari_pix2rep.evaluation.phantom import write_phantom_dataset
from napari_pix2rep.evaluation.protocols import LoadedCase, few_slice_given, score, summarise
from napari_pix2rep.io.acdc import list_cases, split_validation


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


def test_annotation_loop_adds_the_worst_slice_each_round(cases, tiny_backbone_file):
    from napari_pix2rep.evaluation.protocols import annotation_loop
    from napari_pix2rep.model.segmenter import load_backbone
    from napari_pix2rep.segment.settings import SegmentSettings

    backbone, pre, _ = load_backbone(tiny_backbone_file)
    case = LoadedCase.load(cases[0])
    settings = SegmentSettings(training={"mode": "linear", "probe_steps": 20})
    rows = annotation_loop((backbone, pre), [case], settings, rounds=2, device="cpu")
    assert [r["round"] for r in rows] == [0, 1, 2] and [r["painted"] for r in rows] == [2, 3, 4]
    given = few_slice_given(case.ed_gt.data)
    added = [tuple(r["next"]) for r in rows[:-1]]
    assert len(set(added)) == 2 and not any(ph == "ED" and z in given for ph, z in added)
    assert "next" not in rows[-1]
    for r in rows:
        assert 0.0 <= r["ED"] <= 1.0 and 0.0 <= r["ES"] <= 1.0 and r["train_s"] > 0


def test_segment_phases_carries_ed_paint_to_es(cases, tiny_backbone_file, monkeypatch):
    import napari_pix2rep.segment.training as training
    from napari_pix2rep.model.segmenter import load_backbone
    from napari_pix2rep.segment.settings import SegmentSettings

    backbone, pre, _ = load_backbone(tiny_backbone_file)
    case = LoadedCase.load(cases[1])
    given = few_slice_given(case.ed_gt.data)
    labels = np.zeros_like(case.ed_gt.data)
    labels[given] = case.ed_gt.data[given]
    seen = []
    real = training.train_segmenter_iter

    def spy(source, preprocess, images, targets, cfg, **kw):
        seen.append([sorted(np.flatnonzero(t.reshape(len(t), -1).any(1))) for t in targets])
        return real(source, preprocess, images, targets, cfg, **kw)

    monkeypatch.setattr(training, "train_segmenter_iter", spy)
    settings = SegmentSettings(training={"mode": "linear", "probe_steps": 10})
    ed, es, _ = protocols.segment_phases((backbone, pre), case, labels, None, settings, "cpu")
    # ED's segmenter learns from the ED paint; ES's also from that paint carried to ES
    assert seen == [[given], [given, given]]
    assert ed.labels.shape == case.ed.data.shape and es.labels.shape == case.es.data.shape
    seen.clear()
    alone = SegmentSettings(training=settings.training, propagate=False)
    protocols.segment_phases((backbone, pre), case, labels, None, alone, "cpu")
    assert seen == [[given]]
