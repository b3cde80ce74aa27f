"""A DICOM cine through the dock, end to end: open the series folder, paint two slices,
Segment, measure, export with the converted affine."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from dicom_series import rotation, write_series

from napari_pix2rep.evaluation.phantom import make_phantom
from napari_pix2rep.io.dicom import read_dicom

pytest.importorskip("qtpy")

PLUGIN = "napari-pix2rep"


def test_dock_segments_a_dicom_cine(dock, tmp_path, tiny_backbone_file, wait_idle, notes):
    ph = make_phantom(n_slices=6, size=(64, 64), n_frames=3, seed=6)
    folder = tmp_path / "series"
    write_series(
        folder,
        np.round(ph.image * 1000),
        orientation=rotation(4),  # oblique, as scanners write short-axis cines
        pixel_spacing=ph.spacing[-2:],
        step_mm=ph.spacing[1],
        description="SAX cine",
        patient="Roe^Ann",
    )
    expected = read_dicom(folder)
    viewer, widget = dock
    (image,) = viewer.open(str(folder), plugin=PLUGIN)
    assert image.name == "Roe_Ann_SAX_cine" and image.data.shape == (3, 6, 64, 64)
    assert tuple(image.scale) == pytest.approx(expected.spacing)

    # the DICOM slices come sorted along the normal, so the phantom's truth fits them
    truth = ph.labels
    np.testing.assert_array_equal(np.asarray(image.data), np.round(ph.image * 1000))
    panel = widget.segment_panel
    widget.model_box.set_path(str(tiny_backbone_file))
    panel.image_combo.setCurrentText(image.name)
    ann = panel.new_annotation_layer()
    ann.data[0, 2] = truth[0, 2]
    ann.data[1, 4] = truth[1, 4]
    ann.refresh()
    assert "frame 0: slice 2; frame 1: slice 4" in panel.refresh_summary()
    panel.set_mode("linear")
    panel.steps_spin.setValue(50)
    assert panel.segment()
    wait_idle(panel.runner)
    assert not [m for s, m in notes if s == "error"], notes
    seg = viewer.layers[f"{image.name} segmentation"]
    assert seg.data.shape == image.data.shape and all(np.any(seg.data[t]) for t in range(3))

    m = widget.measure_panel
    m.refresh_layers()
    m.set_layers(seg.name)
    assert m.compute() is not None and m.curve.rowCount() == 3

    out = panel.export_segmentation(str(tmp_path / "cine_seg.nii.gz"))
    written = nib.load(out)
    assert written.shape == (64, 64, 6, 3)
    np.testing.assert_array_equal(written.affine, expected.affine)
    np.testing.assert_array_equal(np.asarray(written.dataobj).transpose(3, 2, 1, 0), seg.data)
