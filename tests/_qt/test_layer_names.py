"""Layers the dock makes have short names that tell ED, ES and other frames apart."""

from __future__ import annotations

import pytest

pytest.importorskip("qtpy")

PLUGIN = "napari-pix2rep"


@pytest.mark.parametrize(
    ("image", "which", "expected"),
    [
        ("patient131_frame01", "segmentation", "ED seg · patient131"),
        ("patient131_frame12", "segmentation", "ES seg · patient131"),
        ("patient131_frame05", "annotation", "frame 5 annotations · patient131"),
        ("patient131_ES", "uncertainty", "ES uncertainty · patient131"),
        ("scan", "segmentation", "scan segmentation"),
        ("patient005_4d", "annotation", "patient005_4d annotations"),
    ],
)
def test_layer_name(tmp_path, image, which, expected):
    from napari_pix2rep._qt.layers import layer_name

    (tmp_path / "Info.cfg").write_text("ED: 1\nES: 12\nGroup: DCM\nNbFrame: 30\n")
    assert layer_name(image, which, str(tmp_path / f"{image}.nii.gz")) == expected


def test_frame_without_info_cfg_is_named_by_frame(tmp_path):
    from napari_pix2rep._qt.layers import layer_name

    name = layer_name("patient131_frame12", "segmentation", str(tmp_path / "x.nii.gz"))
    assert name == "frame 12 seg · patient131"


def test_ed_and_es_layers_are_told_apart(dock, tmp_path):
    """Two phases of one patient open: annotation and segmentation names differ, phase
    first (napari's layer list cuts long names at the end)."""
    from napari_pix2rep._qt import layers as L
    from napari_pix2rep.evaluation.phantom import make_phantom
    from napari_pix2rep.io.nifti_write import write_nifti

    viewer, widget = dock
    case = tmp_path / "patient131"
    case.mkdir()
    (case / "Info.cfg").write_text("ED: 1\nES: 4\n")
    ph = make_phantom(n_slices=3, size=(32, 32), seed=1)
    for frame in (1, 4):
        path = case / f"patient131_frame{frame:02d}.nii.gz"
        viewer.open(str(write_nifti(path, ph.image, ph.to_volume(), kind="image")), plugin=PLUGIN)
    panel = widget.segment_panel
    names = []
    for image_name in ("patient131_frame01", "patient131_frame04"):
        panel.image_combo.setCurrentText(image_name)
        image = viewer.layers[image_name]
        names.append(panel.new_annotation_layer().name)
        names.append(L.add_labels_for(viewer, image, L.SEGMENTATION, ("bg", "LV")).name)
    assert names == [
        "ED annotations · patient131",
        "ED seg · patient131",
        "ES annotations · patient131",
        "ES seg · patient131",
    ]
    assert len({n[:6] for n in names}) == 4  # distinct even when cut to a few characters
    # the dock still links each layer to its image by metadata, not by name
    image = viewer.layers["patient131_frame04"]
    assert L.linked_layer(viewer, image, L.SEGMENTATION).name == "ES seg · patient131"


def test_renaming_an_image_keeps_its_annotation_and_segmentation(dock, tmp_path):
    """The dock links layers to their image by the image's id: renaming the image in
    napari's layer list does not orphan them, and a new image under the old name does
    not take them."""
    from napari_pix2rep._qt import layers as L
    from napari_pix2rep.evaluation.phantom import make_phantom
    from napari_pix2rep.io.nifti_write import write_nifti

    viewer, widget = dock
    ph = make_phantom(n_slices=3, size=(32, 32), seed=1)
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    viewer.open(
        str(write_nifti(first / "scan.nii.gz", ph.image, ph.to_volume(), kind="image")),
        plugin=PLUGIN,
    )
    panel = widget.segment_panel
    panel.image_combo.setCurrentText("scan")
    ann = panel.new_annotation_layer()
    image = viewer.layers["scan"]
    seg = L.add_labels_for(viewer, image, L.SEGMENTATION, ("bg", "LV"))

    image.name = "patient001 ED"
    viewer.open(
        str(write_nifti(second / "scan.nii.gz", ph.image, ph.to_volume(), kind="image")),
        plugin=PLUGIN,
    )
    renamed, newcomer = viewer.layers["patient001 ED"], viewer.layers["scan"]
    assert L.same(L.linked_layer(viewer, renamed, L.ANNOTATION), ann)
    assert L.same(L.linked_layer(viewer, renamed, L.SEGMENTATION), seg)
    assert L.linked_layer(viewer, newcomer, L.ANNOTATION) is None
    assert L.linked_image(viewer, ann) == "patient001 ED"
    panel.image_combo.setCurrentText("patient001 ED")
    assert panel.annotation_combo.currentText() == ann.name
    assert L.same(panel.segmentation_layer(), seg)
    panel.image_combo.setCurrentText("scan")
    assert panel.segmentation_layer() is None
