"""The clinician's loop in a real napari viewer: annotate two slices, segment, undo,
correct, segment again, export; and errors that become notifications."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from napari_pix2rep.evaluation.phantom import make_phantom
from napari_pix2rep.io.nifti_write import write_nifti
from napari_pix2rep.measure.metrics import dice_per_class

pytest.importorskip("qtpy")

PLUGIN = "napari-pix2rep"
DTYPE_FIELDS = ("datatype", "bitpix", "scl_slope", "scl_inter", "cal_min", "cal_max")


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(n_slices=8, size=(96, 96), seed=3)


@pytest.fixture
def scan(tmp_path, phantom):
    return write_nifti(tmp_path / "scan.nii.gz", phantom.image, phantom.to_volume(), kind="image")


def _errors(notes):
    return [m for sev, m in notes if sev == "error"]


def test_annotate_segment_undo_correct_export(
    dock, qtbot, tmp_path, scan, phantom, tiny_backbone_file, assert_same_header, notes, wait_idle
):
    viewer, widget = dock
    (image,) = viewer.open(scan, plugin=PLUGIN)
    panel = widget.segment_panel
    widget.model_box.set_path(str(tiny_backbone_file))
    panel.image_combo.setCurrentText(image.name)

    ann = panel.new_annotation_layer()
    assert ann.name == "scan annotations" and ann.data.shape == image.data.shape
    assert tuple(ann.scale) == tuple(image.scale)
    assert ann.metadata["pix2rep_nifti"]["header"] == image.metadata["pix2rep_nifti"]["header"]
    assert list(ann.features["class"]) == ["background", "RV", "MYO", "LV"]
    for z in (2, 5):  # "paint" two slices with the truth
        ann.data[z] = phantom.labels[z]
    ann.refresh()
    assert "slices 2, 5" in panel.refresh_summary()
    assert len(panel._annotation_pairs()) == 1  # the chosen pair, once
    painted = np.array(ann.data, copy=True)

    # fine-tune briefly: the tiny test backbone's linear probe is too weak to be a check
    panel.set_mode("finetune")
    panel.steps_spin.setValue(100)
    panel.crop_spin.setValue(64)
    assert panel.segment()
    assert not panel.segment_button.isEnabled() and panel.cancel_button.isEnabled()
    wait_idle(panel.runner)
    qtbot.wait(250)  # longer than the progress throttle: the outcome stays the last word
    assert panel.status.text().startswith("Done in"), panel.status.text()
    assert not _errors(notes), notes
    seg = viewer.layers["scan segmentation"]
    assert seg.data.shape == image.data.shape and seg.metadata["pix2rep"]["role"] == "segmentation"
    dice = dice_per_class(np.asarray(seg.data), phantom.labels, [1, 2, 3])
    assert dice[3] > 0.7, dice  # LV: a broken pipeline lands near 0
    assert np.nanmean(list(dice.values())) > 0.6, dice
    np.testing.assert_array_equal(ann.data, painted)  # predictions never touch annotations
    first = np.array(seg.data, copy=True)
    assert panel.segmenter is not None and panel.segment_button.isEnabled()

    # Ctrl+Z undoes the prediction in one step
    seg.undo()
    assert not np.any(seg.data)
    seg.redo()
    np.testing.assert_array_equal(seg.data, first)

    # a second Segment (linear probe this time) is undone back to the first prediction
    panel.set_mode("linear")
    panel.steps_spin.setValue(150)
    assert panel.segment()
    wait_idle(panel.runner)
    second = np.array(seg.data, copy=True)
    assert not np.array_equal(second, first)
    seg.undo()
    np.testing.assert_array_equal(seg.data, first)
    seg.redo()
    np.testing.assert_array_equal(seg.data, second)
    np.testing.assert_array_equal(ann.data, painted)
    # the segmenter in memory predicts again without training: the same result (the
    # same paint, so the same heart region)
    assert panel.predict_with_current()
    wait_idle(panel.runner)
    np.testing.assert_array_equal(seg.data, second)

    # "Use corrections": only the slice edited in the segmentation layer is copied
    fixed = np.array(seg.data[6], copy=True)
    fixed[40:50, 40:50] = 3
    seg.data[6] = fixed
    seg.refresh()
    assert panel.use_corrections() == 1
    np.testing.assert_array_equal(ann.data[6], fixed)
    for z in range(8):
        if z != 6:
            np.testing.assert_array_equal(ann.data[z], painted[z])
    assert "slices 2, 5, 6" in panel.refresh_summary()
    ann.undo()  # the copy is one undoable edit of the annotation layer
    np.testing.assert_array_equal(ann.data, painted)
    ann.redo()

    # erasing a false positive and using it marks the slice background-only
    z = next(z for z in range(8) if z not in (2, 5, 6) and np.any(seg.data[z]))
    seg.data[z] = 0
    seg.refresh()
    assert panel.use_corrections() == 2  # slice 6 again, and z
    assert ann.metadata["pix2rep_background_slices"] == [z]
    assert f"(background only: slice {z})" in panel.refresh_summary()
    assert any(f"slice {z} now empty: marked background only" in m for _, m in notes)
    (saved_ann,) = ann.save(str(tmp_path / "scan_labels.nii.gz"), plugin=PLUGIN)
    sidecar = json.loads((tmp_path / "scan_labels.slices.json").read_text())
    assert sidecar["background_only"] == [[z]] and sidecar["shape"] == [8, 96, 96]

    # the suggestion never points at an annotated slice
    pos = panel.suggest_next_slice()
    assert pos is not None and pos[0] not in (2, 5, 6, z)

    # export = the plugin's writer: the image's header, the layer's data
    out = panel.export_segmentation(str(tmp_path / "scan_seg.nii.gz"))
    written = nib.load(out)
    assert_same_header(nib.load(scan).header, written.header, ignore=DTYPE_FIELDS)
    np.testing.assert_array_equal(np.asarray(written.dataobj).transpose(2, 1, 0), seg.data)
    (saved,) = seg.save(str(tmp_path / "via_menu.nii.gz"), plugin=PLUGIN)
    via_menu = nib.load(saved)
    assert_same_header(written.header, via_menu.header)
    np.testing.assert_array_equal(np.asarray(via_menu.dataobj), np.asarray(written.dataobj))

    # the trained segmenter is kept and can be saved, and reused without training
    model = panel.save_segmenter(str(tmp_path / "seg.pt"))
    assert model is not None
    import torch

    assert torch.load(model, weights_only=True)["format"] == "napari-pix2rep/segmenter"
    assert not _errors(notes), notes


def test_errors_become_one_sentence_notifications(
    dock, qtbot, tmp_path, scan, tiny_backbone_file, notes, wait_idle
):
    import torch

    viewer, widget = dock
    (image,) = viewer.open(scan, plugin=PLUGIN)
    panel = widget.segment_panel
    panel.image_combo.setCurrentText(image.name)
    widget.model_box.set_path(str(tiny_backbone_file))

    # no annotation layer, then an empty one: a backbone cannot segment without painting
    for make_layer in (False, True):
        notes.clear()
        ann = panel.new_annotation_layer() if make_layer else None
        assert panel.segment()
        wait_idle(panel.runner)
        (msg,) = _errors(notes)
        assert "No annotated slice" in msg and "without painting" in msg and "\n" not in msg
        assert panel.segment_button.isEnabled()
        assert "scan segmentation" not in [ly.name for ly in viewer.layers]  # none left

    # a label value outside the class list
    notes.clear()
    ann.data[3, 10:20, 10:20] = 7
    ann.refresh()
    panel.segment()
    wait_idle(panel.runner)
    (msg,) = _errors(notes)
    assert "[7]" in msg and "classes" in msg
    ann.data[3] = 0
    ann.data[3, 40:50, 40:50] = 3
    ann.refresh()

    # a backbone file of another architecture, and a file that is no model at all
    obj = torch.load(tiny_backbone_file, weights_only=True)
    obj["arch"] = {**obj["arch"], "base_channels": obj["arch"]["base_channels"] * 2}
    other = tmp_path / "other_arch.pt"
    torch.save(obj, other)
    junk = tmp_path / "junk.pt"
    junk.write_text("not a model")
    for path, words in ((other, "different architecture"), (junk, "not a napari-pix2rep")):
        notes.clear()
        widget.model_box.set_path(str(path))
        assert panel.segment()
        wait_idle(panel.runner)
        (msg,) = _errors(notes)
        assert words in msg and msg.endswith("."), msg
    notes.clear()
    widget.model_box.set_path("")
    assert not panel.segment()
    assert any("No model chosen" in m for m in _errors(notes))

    # nothing to correct or export yet
    notes.clear()
    assert panel.use_corrections() == 0
    assert panel.export_segmentation(str(tmp_path / "x.nii.gz")) is None
    assert len(_errors(notes)) == 2
    assert panel.segment_button.isEnabled()


def test_cancel_segmentation(dock, qtbot, scan, phantom, tiny_backbone_file, notes, wait_idle):
    viewer, widget = dock
    (image,) = viewer.open(scan, plugin=PLUGIN)
    panel = widget.segment_panel
    panel.image_combo.setCurrentText(image.name)
    widget.model_box.set_path(str(tiny_backbone_file))
    ann = panel.new_annotation_layer()
    ann.data[4] = phantom.labels[4]
    ann.refresh()
    panel.set_mode("finetune")
    panel.steps_spin.setValue(5000)
    panel.crop_spin.setValue(64)
    panel.segment()
    qtbot.waitUntil(
        lambda: panel.runner.last is not None and panel.runner.last.stage == "probe",
        timeout=60_000,
    )
    panel.cancel()
    wait_idle(panel.runner, 30)
    qtbot.wait(250)
    assert panel.status.text() == "Cancelled: no layer was changed."
    assert panel.runner.last.stage == "probe" and panel.runner.last.step < 5000
    assert "scan segmentation" not in [ly.name for ly in viewer.layers]
    assert any("cancelled" in m for _, m in notes)
    assert panel.segment_button.isEnabled() and not panel.cancel_button.isEnabled()


def test_4d_cine_annotations_per_frame(dock, tmp_path, tiny_backbone_file, wait_idle, notes):
    viewer, widget = dock
    viewer.open_sample(PLUGIN, "phantom_4d")
    image, truth = viewer.layers["phantom cine"], viewer.layers["phantom cine truth"]
    sub = np.asarray(image.data)[:3, :, ::2, ::2]  # 3 frames at half resolution: quick
    small = viewer.add_image(
        sub,
        name="cine",
        scale=(image.scale[0], image.scale[1], image.scale[2] * 2, image.scale[3] * 2),
    )
    panel = widget.segment_panel
    widget.model_box.set_path(str(tiny_backbone_file))
    panel.image_combo.setCurrentText("cine")
    panel.uncertainty_check.setChecked(True)
    ann = panel.new_annotation_layer()
    assert ann.data.shape == small.data.shape
    gt = np.asarray(truth.data)[:3, :, ::2, ::2]
    ann.data[0, 3] = gt[0, 3]
    ann.data[2, 6] = gt[2, 6]
    ann.refresh()
    assert "frame 0: slice 3; frame 2: slice 6" in panel.refresh_summary()
    panel.set_mode("linear")
    panel.steps_spin.setValue(50)
    assert panel.segment()
    wait_idle(panel.runner)
    assert not [m for s, m in notes if s == "error"], notes
    seg = viewer.layers["cine segmentation"]
    assert seg.data.shape == small.data.shape and np.any(seg.data[1])  # every frame
    assert viewer.layers["cine uncertainty"].data.shape == small.data.shape
    assert len(panel.suggest_next_slice()) == 2  # (frame, slice)
    m = widget.measure_panel
    m.refresh_layers()
    m.set_layers("cine segmentation")
    assert m.compute() is not None and m.curve.rowCount() == 3


def test_closing_napari_mid_job_stops_it_cleanly(make_napari_viewer, tmp_path, qtbot):
    import torch

    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Pix2Rep")
    ph = make_phantom(n_slices=6, size=(96, 96), seed=5)
    viewer.add_image(ph.image, name="unlabelled", scale=ph.spacing)
    panel = widget.pretrain_panel
    panel.refresh_layers()
    panel.set_checked_layers(["unlabelled"])
    panel.preset_combo.setCurrentText("tiny")
    panel.steps_spin.setValue(5000)
    panel.out_edit.setText(str(tmp_path / "bb.pt"))
    runner = panel.runner
    panel.start({"crop": 64, "batch_size": 4, "checkpoint_every": 10_000})
    qtbot.waitUntil(lambda: runner.last is not None and runner.last.step >= 2, timeout=60_000)
    viewer.close()  # the window's close event stops the job and waits for it
    assert runner._finished.is_set()
    state = torch.load(tmp_path / "bb.pt", weights_only=True)
    assert 2 <= state["meta"]["steps"] < 5000
    assert not list(tmp_path.glob(".bb.pt*"))
    qtbot.waitUntil(lambda: not runner.running, timeout=10_000)


def test_ed_painted_es_segmented_carries_the_slices(dock, tiny_backbone_file, wait_idle, notes):
    viewer, widget = dock
    ph = make_phantom(n_slices=4, size=(96, 96), n_frames=6, seed=5)
    scale = ph.spacing[1:]
    viewer.add_image(ph.image[0], name="ED", scale=scale)
    viewer.add_image(ph.image[ph.es_frame], name="ES", scale=scale)
    panel = widget.segment_panel
    widget.model_box.set_path(str(tiny_backbone_file))
    panel.image_combo.setCurrentText("ED")
    ann = panel.new_annotation_layer()
    ann.data[[1, 2]] = ph.labels[0, [1, 2]]
    ann.refresh()
    panel.image_combo.setCurrentText("ES")  # no annotation of its own
    assert "ED annotations" in panel.refresh_summary()
    panel.set_mode("linear")
    panel.steps_spin.setValue(20)
    assert panel.segment()
    wait_idle(panel.runner)
    assert not _errors(notes), notes
    used = sorted(map(tuple, panel.segmenter.meta["annotated_slices"]))
    assert used == [(0, 1), (0, 2), (1, 1), (1, 2)]  # ED's slices and the carried ones
    assert np.any(viewer.layers["ES segmentation"].data)
    assert panel.segmenter.meta["segment_settings"]["propagate"] is True
    said = "linear probe, heart region from the annotation, 2 painted slice(s) carried from ED"
    assert any(said in m for _, m in notes), notes  # the dock says what the recipe did

    # the form's settings reach the recipe: nothing carried when propagation is off
    panel.propagate_check.setChecked(False)
    assert panel.segment()
    wait_idle(panel.runner)
    used = sorted(map(tuple, panel.segmenter.meta["annotated_slices"]))
    assert used == [(0, 1), (0, 2)] and panel.settings.get("segment/propagate", True) is False
    panel.propagate_check.setChecked(True)

    # a correction of ES goes into a new ES annotation layer, never into ED's
    seg = viewer.layers["ES segmentation"]
    seg.data[0] = 0
    seg.data[0, 10:20, 10:20] = 1
    seg.refresh()
    assert panel.use_corrections() == 1
    assert not np.any(ann.data[0]) and "ES annotations" in [ly.name for ly in viewer.layers]
    assert np.array_equal(viewer.layers["ES annotations"].data[0], seg.data[0])
