"""The dock with a default (zero-click) segmenter: it is the model box's default, and
Segment with nothing painted gives its masks for every slice and says which model made
them."""

from __future__ import annotations

import numpy as np
import pytest

from napari_pix2rep.evaluation.phantom import make_phantom
from napari_pix2rep.io.nifti_write import write_nifti
from napari_pix2rep.jobs import load_model
from napari_pix2rep.model.segmenter import ZERO_CLICK_KEY
from napari_pix2rep.segment.predict import predict_volume
from napari_pix2rep.segment.recipe import Annotation, Scan, segment
from napari_pix2rep.segment.settings import SegmentSettings

pytest.importorskip("qtpy")

PLUGIN = "napari-pix2rep"


@pytest.fixture
def default_model(tiny_backbone_file, tmp_path, monkeypatch):
    """A zero-click segmenter file set as the shipped default (before the dock opens)."""
    ph = make_phantom(n_slices=4, size=(64, 64), seed=7)
    trained = segment(
        [Scan(ph.image, ph.spacing)],
        [Annotation(ph.labels)],
        load_model(str(tiny_backbone_file)),
        SegmentSettings(training={"probe_steps": 30}, localise=False),
    )
    seg = trained.segmenters[0]
    seg.meta[ZERO_CLICK_KEY] = True
    path = seg.save(tmp_path / "pix2rep_cardiac_test.pt")
    monkeypatch.setenv("NAPARI_PIX2REP_SEGMENTER", str(path))
    return seg, path


def test_segment_with_nothing_painted_gives_the_default_models_masks(
    default_model, dock, qtbot, tmp_path, notes, wait_idle
):
    seg, path = default_model
    viewer, widget = dock
    assert widget.model_box.path == str(path)  # the default model is the default
    ph = make_phantom(n_slices=4, size=(64, 64), seed=8)
    scan = write_nifti(tmp_path / "scan.nii.gz", ph.image, ph.to_volume(), kind="image")
    (image,) = viewer.open(scan, plugin=PLUGIN)
    panel = widget.segment_panel
    panel.image_combo.setCurrentText(image.name)
    assert panel.segment()
    wait_idle(panel.runner)
    qtbot.wait(250)
    assert panel.status.text().startswith("Done in"), panel.status.text()
    assert "zero clicks" in panel.status.text()
    assert not [m for sev, m in notes if sev == "error"], notes
    expected = predict_volume(seg, ph.image, ph.spacing, device="cpu").labels
    got = np.asarray(viewer.layers["scan segmentation"].data)
    np.testing.assert_array_equal(got, expected)
    assert any(path.name in m for _, m in notes), notes  # which model made them
