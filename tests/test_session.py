"""The dock's plain-Python helpers (no Qt): classes, edits, suggestions, measures, errors."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from napari_pix2rep.annotations import AnnotationError
from napari_pix2rep.checkpoint import ModelFileError
from napari_pix2rep.nifti import NiftiError, volume_metadata
from napari_pix2rep.phantom import make_phantom
from napari_pix2rep.session import (
    MeasuresTable,
    changed_voxels,
    class_colors,
    edited_slices,
    error_message,
    format_classes,
    format_positions,
    layer_spacing,
    measures_table,
    parse_classes,
    slice_update,
    suggest_slice,
    write_csv,
)


def test_parse_and_format_classes():
    assert parse_classes(" background, RV ,MYO,LV,") == ("background", "RV", "MYO", "LV")
    assert parse_classes(["bg", "scar"]) == ("bg", "scar")
    assert format_classes(("background", "LV")) == "background, LV"
    with pytest.raises(ValueError, match="at least two"):
        parse_classes("background")
    with pytest.raises(ValueError, match="twice"):
        parse_classes("background, LV, lv")


def test_class_colors():
    colors = class_colors(7)
    assert len(colors) == 7 and colors[0][3] == 0.0  # background transparent
    assert len({tuple(c) for c in colors.values()}) == 7
    assert all(len(c) == 4 for c in colors.values())


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


def test_layer_spacing_prefers_nifti_metadata():
    ph = make_phantom(n_slices=3, size=(32, 32), seed=1)
    meta = volume_metadata(ph.to_volume())
    assert layer_spacing(meta, (1, 1, 1), 3) == (10.0, 1.5, 1.5)
    assert layer_spacing({}, (5.0, 2.0, 2.0), 3) == (5.0, 2.0, 2.0)
    assert layer_spacing(None, (0.1, 5.0, 2.0, 2.0), 4) == (0.1, 5.0, 2.0, 2.0)


def test_measures_table_4d_3d_pair_and_single(tmp_path):
    cine = make_phantom(n_slices=6, size=(80, 80), n_frames=8, seed=4)
    t4 = measures_table(cine.labels, cine.spacing)
    names = [r[0] for r in t4.summary]
    assert names == [
        "LV EDV",
        "LV ESV",
        "LV EF",
        "RV EDV",
        "RV ESV",
        "RV EF",
        "Myocardial mass",
    ]
    ef = dict((n, v) for n, v, _ in t4.summary)["LV EF"]
    assert 30 < ef < 85 and len(t4.curve) == 8 and "ED = frame 0" in t4.note

    ed, es = cine.labels[0], cine.labels[cine.es_frame]
    pair = measures_table(ed, cine.spacing[1:], es)
    assert dict((n, v) for n, v, _ in pair.summary)["LV EF"] == pytest.approx(ef)
    swapped = measures_table(es, cine.spacing[1:], ed)
    assert "check the choice" in swapped.note
    single = measures_table(ed, cine.spacing[1:])
    assert [r[0] for r in single.summary] == ["LV volume", "RV volume", "MYO volume"]
    with pytest.raises(ValueError, match="same grid"):
        measures_table(ed, cine.spacing[1:], es[:-1])

    out = write_csv(tmp_path / "m.csv", t4)
    rows = list(csv.reader(open(out)))
    assert rows[0] == ["quantity", "value", "unit"] and rows[3][0] == "LV EF"
    assert rows[9] == ["frame", "LV_ml", "RV_ml", "MYO_ml"] and len(rows) == 10 + 8
    assert [p.name for p in tmp_path.iterdir()] == ["m.csv"]  # no temporary file left
    with pytest.raises(FileNotFoundError):
        write_csv(tmp_path / "missing" / "m.csv", MeasuresTable([]))


def test_error_message_is_one_sentence():
    class OutOfMemoryError(RuntimeError):
        pass

    assert error_message(AnnotationError("No annotated slice: paint one.")) == (
        "No annotated slice: paint one."
    )
    assert error_message(ModelFileError("x.pt is not a model file")) == "x.pt is not a model file."
    assert error_message(NiftiError("a.nii is empty.\nmore")) == "a.nii is empty."
    oom = error_message(OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert "ran out of memory" in oom and "\n" not in oom
    assert error_message(RuntimeError("boom")) == "RuntimeError: boom."
    assert error_message(KeyError("arch")).startswith("KeyError: missing entry")
    assert error_message(ValueError("")) == "ValueError."
    assert len(error_message(ValueError("x" * 1000))) <= 300


def test_out_of_memory_is_one_sentence_with_the_amount():
    import torch

    for make, amount in [
        (lambda: np.empty((2**22, 2**30), np.float32), "16.0 PiB"),  # numpy MemoryError
        (lambda: torch.empty(2**50), "4.0 PiB"),  # PyTorch's CPU allocator
    ]:
        with pytest.raises((MemoryError, RuntimeError)) as e:
            make()
        assert error_message(e.value) == (
            f"The device ran out of memory ({amount} was asked for): use a smaller preset "
            "or batch size, or choose the CPU."
        )
    assert error_message(MemoryError()).startswith("The device ran out of memory: use")


# -- which layers the Measures tab pre-selects (napari_pix2rep.measure_layers) ----------
def _labels(name, shape=(8, 32, 32), role=None, image=None):
    from napari_pix2rep.measure_layers import LabelsInfo

    return LabelsInfo(name, shape, role, image)


def test_measures_prefer_segmentations_over_annotations():
    from napari_pix2rep.measure_layers import choose_measure_layers, ed_candidates, es_candidates

    ann = _labels("scan annotations", role="annotation", image="scan")
    seg = _labels("scan segmentation", role="segmentation", image="scan")
    other = _labels("scan_gt")
    layers = [ann, other, seg]  # the annotation layer was made first
    assert [ly.name for ly in ed_candidates(layers)] == [
        "scan segmentation",
        "scan_gt",
        "scan annotations",
    ]
    choice = choose_measure_layers(layers)
    assert (choice.ed, choice.es) == ("scan segmentation", None)
    assert "annotations" not in [ly.name for ly in es_candidates(layers, seg)]
    only_ann = choose_measure_layers([ann])
    assert only_ann.ed is None and only_ann.reason == "no segmentation to measure"
    assert choose_measure_layers([ann, other]).ed == "scan_gt"  # a labels file beats it


def test_measures_pick_ed_es_by_name_and_frame():
    from napari_pix2rep.measure_layers import choose_measure_layers

    def seg(image, shape=(8, 32, 32)):
        return _labels(f"{image} segmentation", shape, "segmentation", image)

    # ACDC frame numbers: the earlier frame is ED, whatever the order opened
    acdc = [seg("patient131_frame11"), seg("patient131_frame01")]
    choice = choose_measure_layers(acdc)
    assert (choice.ed, choice.es) == ("patient131_frame01 segmentation", acdc[0].name)
    assert "frames 1 and 11" in choice.reason
    # ED / ES in the names; the pair of the same case, on the same grid
    named = [
        seg("p2 ES"),
        seg("p1_ED"),
        seg("p1_ES"),
        _labels("p1 ED labels", (8, 32, 32)),  # not a segmentation: a lower rank
        seg("p3 ES", (6, 32, 32)),
    ]
    choice = choose_measure_layers(named)
    assert (choice.ed, choice.es) == ("p1_ED segmentation", "p1_ES segmentation")
    assert choose_measure_layers([seg("end-diastole"), seg("end-systole")]).es == (
        "end-systole segmentation"
    )
    # a cine segmentation: ED/ES come from its curve; no pair: volumes of one layer
    cine = choose_measure_layers([seg("one"), seg("cine", (12, 8, 32, 32))])
    assert (cine.ed, cine.es) == ("cine segmentation", None)
    single = choose_measure_layers([seg("one"), seg("two", (6, 32, 32))])
    assert (single.ed, single.es) == ("one segmentation", None)
    # words that merely contain "ed" / "es" are no phase
    assert choose_measure_layers([seg("scaled"), seg("tested")]).es is None
