"""Tests of napari_pix2rep.measure.measure_layers."""

from __future__ import annotations


def _labels(name, shape=(8, 32, 32), role=None, image=None):
    from napari_pix2rep.measure.measure_layers import LabelsInfo

    return LabelsInfo(name, shape, role, image)


def test_measures_prefer_segmentations_over_annotations():
    from napari_pix2rep.measure.measure_layers import (
        choose_measure_layers,
        ed_candidates,
        es_candidates,
    )

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
    from napari_pix2rep.measure.measure_layers import choose_measure_layers

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
