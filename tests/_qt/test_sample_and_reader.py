"""GUI smoke test: the plugin's sample, reader and labels writer inside a real napari viewer.

``make_napari_viewer`` comes from napari's pytest plugin (auto-registered through its
``pytest11`` entry point); pytest-xvfb provides the display.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from napari_pix2rep.evaluation.phantom import make_phantom
from napari_pix2rep.io.nifti_write import write_nifti

pytest.importorskip("qtpy")

PLUGIN = "napari-pix2rep"
DTYPE_FIELDS = ("datatype", "bitpix", "scl_slope", "scl_inter", "cal_min", "cal_max")


def test_sample_open_and_save_labels(make_napari_viewer, tmp_path, assert_same_header):
    viewer = make_napari_viewer()

    viewer.open_sample(PLUGIN, "phantom_3d")
    assert [layer._type_string for layer in viewer.layers] == ["image", "labels"]
    image, truth = viewer.layers["phantom"], viewer.layers["phantom truth"]
    assert tuple(image.scale) == tuple(truth.scale) == (10.0, 1.5, 1.5)
    assert image.data.shape == truth.data.shape == (10, 160, 160)

    ph = make_phantom(n_slices=5, size=(64, 80), seed=11)
    vol = ph.to_volume("image")
    path = write_nifti(tmp_path / "scan.nii.gz", ph.image, vol, kind="image")
    layers = viewer.open(path, plugin=PLUGIN)
    assert len(layers) == 1 and layers[0]._type_string == "image"
    assert layers[0].name == "scan"
    assert tuple(layers[0].scale) == (10.0, 1.5, 1.5)
    np.testing.assert_array_equal(layers[0].data, ph.image)

    gt_path = write_nifti(tmp_path / "scan_gt.nii.gz", ph.labels, vol, kind="labels")
    (gt_layer,) = viewer.open(gt_path, plugin=PLUGIN)
    assert gt_layer._type_string == "labels"

    # a labels layer made for the opened image (shape, scale and metadata copied)
    painted = viewer.add_labels(
        np.zeros(layers[0].data.shape, np.int32),
        name="painted",
        scale=layers[0].scale,
        metadata=dict(layers[0].metadata),
    )
    painted.data[2, 10:20, 10:30] = 3
    out = tmp_path / "painted.nii.gz"
    saved = painted.save(str(out), plugin=PLUGIN)
    assert saved == [str(out)]
    written = nib.load(str(out))
    assert written.get_data_dtype() == np.uint8
    assert_same_header(nib.load(path).header, written.header, ignore=DTYPE_FIELDS)
    np.testing.assert_array_equal(np.asanyarray(written.dataobj).transpose(2, 1, 0), painted.data)

    # the sample's truth exports with the sample image's header
    truth_out = tmp_path / "truth.nii.gz"
    image_out = tmp_path / "image.nii.gz"
    truth.save(str(truth_out), plugin=PLUGIN)
    image.save(str(image_out), plugin=PLUGIN)
    assert_same_header(
        nib.load(str(image_out)).header, nib.load(str(truth_out)).header, ignore=DTYPE_FIELDS
    )


def test_dock_widget(make_napari_viewer):
    viewer = make_napari_viewer()
    dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN)
    assert type(widget).__name__ == "Pix2RepDock"
    tabs = [widget.tabs.tabText(i) for i in range(widget.tabs.count())]
    assert tabs == ["Segment", "Measures", "Pretrain"]
