"""Safe model switching: the model box says what is active and warns about short runs,
a relaunch keeps the model in use, "Start from the chosen model" follows the choice, and
a run never overwrites the model in use."""

from __future__ import annotations

import pytest

from napari_pix2rep.evaluation.phantom import make_phantom
from napari_pix2rep.model.checkpoint import BACKBONE, atomic_torch_save
from napari_pix2rep.model.nets.unet import UNet, preset
from napari_pix2rep.model.preprocess import PreprocessConfig

pytest.importorskip("qtpy")


def _short_run_file(path, steps=7):
    """A real (untrained) ``tiny`` backbone file whose metadata says ``steps`` steps."""
    net = UNet(preset("tiny"))
    meta = {"method": "pix2rep-infonce", "steps": steps, "data": ["layer:scan"], "n_slices": 6}
    obj = {
        "format": BACKBONE,
        "version": 1,
        "arch": net.config.to_dict(),
        "preprocess": PreprocessConfig().to_dict(),
        "state_dict": net.state_dict(),
        "meta": meta,
    }
    return atomic_torch_save(obj, path)


def test_model_box_shows_the_active_model_and_warns(make_napari_viewer, tmp_path):
    from napari_pix2rep._qt.dock import Pix2RepDock

    viewer = make_napari_viewer()
    dock = Pix2RepDock(viewer)
    box = dock.model_box
    assert box.path == str(box.shipped)
    assert "the shipped backbone" in box.status.text() and "12 500 steps" in box.status.text()
    assert not box.warning.isVisibleTo(box)

    short = _short_run_file(tmp_path / "short.pt")
    box.set_path(str(short))
    assert "Active: short.pt" in box.status.text() and "7 steps" in box.status.text()
    assert box.warning.isVisibleTo(box) and "7 vs 12500" in box.warning.text()
    dock.settings.sync()
    dock.deleteLater()

    # the next launch shows the same model, and the same warning
    again = Pix2RepDock(viewer)
    assert again.model_box.path == str(short)
    assert again.model_box.warning.isVisibleTo(again.model_box)
    junk = tmp_path / "image.nii.gz"
    junk.write_bytes(b"no model")
    again.model_box.set_path(str(junk))
    assert "is not a napari-pix2rep model file" in again.model_box.status.text()
    assert not again.model_box.warning.isVisibleTo(again.model_box)
    assert not again.pretrain_panel.init_check.isChecked()  # nothing usable to start from
    again.deleteLater()


def test_start_from_chosen_model_follows_the_choice(dock, tmp_path):
    viewer, widget = dock
    panel, box = widget.pretrain_panel, widget.model_box
    assert panel.init_check.isChecked()  # the shipped backbone is chosen
    box.set_path("")
    assert not panel.init_check.isChecked()
    box.set_path(str(_short_run_file(tmp_path / "short.pt")))
    assert panel.init_check.isChecked()


def test_a_run_never_overwrites_the_model_in_use(dock, tmp_path, wait_idle, notes):
    viewer, widget = dock
    ph = make_phantom(n_slices=4, size=(64, 64), seed=5)
    viewer.add_image(ph.image, name="unlabelled", scale=ph.spacing)
    panel, box = widget.pretrain_panel, widget.model_box
    panel.refresh_layers()
    panel.set_checked_layers(["unlabelled"])
    active = _short_run_file(tmp_path / "pretrained.pt", steps=60)
    before = active.read_bytes()
    box.set_path(str(active))
    box.device_combo.setCurrentText("cpu")
    panel.out_edit.setText(str(active))
    panel.steps_spin.setValue(2)
    assert panel.init_check.isChecked()
    assert panel.start({"crop": 64, "batch_size": 2})
    assert panel.output_path == str(tmp_path / "pretrained_2.pt")
    wait_idle(panel.runner, 120)
    assert active.read_bytes() == before
    assert not [m for s, m in notes if s == "error"], notes
    # a finished run becomes the model; it continued the chosen one, so no warning
    assert box.path == str(tmp_path / "pretrained_2.pt")
    assert "2 steps on top of pretrained.pt (62 in all)" in box.status.text()
