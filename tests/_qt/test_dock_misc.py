"""Settings that persist, the measures table and its CSV, the launcher."""

from __future__ import annotations

import csv

import pytest

pytest.importorskip("qtpy")

PLUGIN = "napari-pix2rep"


def test_settings_persist_between_docks(make_napari_viewer, tmp_path):
    from napari_pix2rep._qt.dock import Pix2RepDock

    viewer = make_napari_viewer()
    first = Pix2RepDock(viewer)
    model = tmp_path / "model.pt"
    model.write_bytes(b"x")
    first.model_box.set_path(str(model))
    first.model_box.device_combo.setCurrentText("cpu")
    seg = first.segment_panel
    seg.set_mode("finetune")
    seg.steps_spin.setValue(123)
    seg.crop_spin.setValue(96)
    seg.uncertainty_check.setChecked(True)
    seg.classes_edit.setText("background, LV")
    seg._classes_edited()
    pre = first.pretrain_panel
    pre.preset_combo.setCurrentText("tiny")
    pre.loss_combo.setCurrentText("barlow")
    pre.steps_spin.setValue(77)
    pre.out_edit.setText(str(tmp_path / "pt.pt"))
    pre.out_edit.editingFinished.emit()
    first.tabs.setCurrentIndex(2)
    first.settings.sync()
    first.deleteLater()

    second = Pix2RepDock(viewer)
    assert second.model_box.path == str(model)
    assert second.model_box.device == "cpu"
    s = second.segment_panel
    assert (s.mode, s.steps_spin.value(), s.crop_spin.value()) == ("finetune", 123, 96)
    assert s.uncertainty_check.isChecked()
    assert s.classes() == ("background", "LV")
    p = second.pretrain_panel
    assert (p.preset_combo.currentText(), p.loss_combo.currentText()) == ("tiny", "barlow")
    assert p.steps_spin.value() == 77 and p.output_path == str(tmp_path / "pt.pt")
    assert second.tabs.currentIndex() == 2
    assert str(tmp_path) in second.settings.path  # the test's INI file, not the user's
    second.deleteLater()


def test_measures_of_the_4d_phantom(dock, tmp_path, notes):
    viewer, widget = dock
    viewer.open_sample(PLUGIN, "phantom_4d")
    panel = widget.measure_panel
    panel.refresh_layers()
    panel.set_layers("phantom cine truth")
    assert not panel.es_combo.isEnabled()
    table = panel.compute()
    assert table is not None and panel.table.rowCount() == 7
    ef = panel.value("LV EF")
    assert 40.0 < ef < 85.0, ef
    assert panel.value("LV EDV") > panel.value("LV ESV") > 0
    assert panel.value("Myocardial mass") > 0
    assert panel.curve.rowCount() == 12
    assert "ED = frame 0" in panel.note.text()
    shown = float(panel.table.item(2, 1).text())
    assert abs(shown - ef) < 0.06

    out = panel.export_csv(str(tmp_path / "measures.csv"))
    rows = list(csv.reader(open(out)))
    assert rows[0] == ["quantity", "value", "unit"]
    assert rows[3][0] == "LV EF" and abs(float(rows[3][1]) - ef) < 1e-3
    assert ["frame", "phase", "segmented", "LV_ml", "RV_ml", "MYO_ml"] in rows
    assert not [m for s, m in notes if s == "error"]

    # the user overrides the cine's ED / ES frames; "auto" brings the LV curve back
    assert panel.ed_frame.isEnabled() and panel.ed_frame.maximum() == 11
    es_auto = int(panel.note.text().split("ES = frame ")[1].split(" ")[0])
    panel.ed_frame.setValue(2)
    panel.compute()
    assert "ED = frame 2 (given), ES = frame" in panel.note.text()
    assert f"ES = frame {es_auto} (smallest LV)" in panel.note.text()
    assert panel.value("LV EF") < ef  # frame 2 is already contracting
    panel.ed_frame.setValue(-1)
    panel.compute()
    assert "ED = frame 0 (largest LV)" in panel.note.text()


def test_measures_of_ed_and_es_3d_layers(dock):
    from napari_pix2rep.evaluation.phantom import make_phantom

    viewer, widget = dock
    cine = make_phantom(n_slices=6, size=(80, 80), n_frames=6, seed=2)
    spacing = cine.spacing[1:]
    viewer.add_labels(cine.labels[0], name="ED seg", scale=spacing)
    viewer.add_labels(cine.labels[cine.es_frame], name="ES seg", scale=spacing)
    panel = widget.measure_panel
    panel.refresh_layers()
    panel.set_layers("ED seg")
    assert panel.compute() is not None and panel.value("LV EF") is None  # volumes only
    assert panel.value("LV volume") > 0
    panel.set_layers("ED seg", "ES seg")
    panel.compute()
    assert 20.0 < panel.value("LV EF") < 85.0


def test_launcher_opens_images_and_docks(make_napari_viewer, monkeypatch, tmp_path):
    import napari

    from napari_pix2rep._qt import launcher
    from napari_pix2rep.evaluation.phantom import make_phantom
    from napari_pix2rep.io.nifti_write import write_nifti

    made = []

    def viewer_factory(**kw):
        made.append(make_napari_viewer(**kw))
        return made[-1]

    monkeypatch.setattr(napari, "Viewer", viewer_factory)
    ran = []
    monkeypatch.setattr(napari, "run", lambda: ran.append(True))

    ph = make_phantom(n_slices=4, size=(64, 64), seed=1)
    path = write_nifti(tmp_path / "case.nii.gz", ph.image, ph.to_volume(), kind="image")
    viewer, widget = launcher.make_viewer([path], show=False)
    assert [ly.name for ly in viewer.layers] == ["case"]
    assert type(widget).__name__ == "Pix2RepDock"
    assert widget.segment_panel.image_combo.currentText() == "case"

    launcher.launch([])  # no paths: the 3D phantom sample
    assert ran == [True]
    assert len(made) == 2
    assert [ly.name for ly in made[1].layers] == ["phantom", "phantom truth"]


def test_fine_tuning_progress_shows_the_time_left(dock):
    from napari_pix2rep.core.progress import Progress

    panel = dock[1].segment_panel
    panel.show_progress(
        Progress("finetune", 40, 200, 0.5, eta_s=75.0, message="held-out Dice 0.8")
    )
    text = panel.status.text()
    assert text.startswith("Fine-tuning 40/200") and "held-out Dice 0.8" in text, text
    assert "about 1:15 left" in text, text
    panel.show_progress(Progress("finetune", 200, 200, 0.4, eta_s=0.0))
    assert "left" not in panel.status.text()
    panel.show_progress(Progress("probe", 10, 300, 0.4))  # no estimate: nothing said
    assert "left" not in panel.status.text()
