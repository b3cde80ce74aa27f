"""Pretraining from the dock: pause, cancel within a step, a loadable checkpoint, and a
GUI thread that keeps running while the worker trains."""

from __future__ import annotations

import time

import pytest

from napari_pix2rep.evaluation.phantom import make_phantom

pytest.importorskip("qtpy")

#: test-sized pretraining (the preset is chosen in the panel)
SMALL_RUN = {"crop": 64, "batch_size": 4, "checkpoint_every": 10_000}


@pytest.fixture
def phantom_layer(dock):
    viewer, widget = dock
    ph = make_phantom(n_slices=6, size=(96, 96), seed=5)
    layer = viewer.add_image(ph.image, name="unlabelled", scale=ph.spacing)
    widget.pretrain_panel.refresh_layers()
    return layer


def _setup(widget, tmp_path, steps):
    panel = widget.pretrain_panel
    panel.set_checked_layers(["unlabelled"])
    panel.preset_combo.setCurrentText("tiny")
    panel.init_check.setChecked(False)  # from scratch, not from the shipped backbone
    panel.steps_spin.setValue(steps)
    panel.out_edit.setText(str(tmp_path / "bb.pt"))
    widget.model_box.device_combo.setCurrentText("cpu")
    return panel


def test_pause_cancel_keeps_checkpoint(dock, phantom_layer, qtbot, tmp_path, wait_idle, notes):
    import torch

    viewer, widget = dock
    panel = _setup(widget, tmp_path, 2000)
    assert panel.start(SMALL_RUN)
    assert not panel.start_button.isEnabled() and panel.cancel_button.isEnabled()
    # an empty bar while the data loads, not Qt's busy indicator (it repaints the window)
    assert panel.progress.maximum() > 0
    runner = panel.runner
    qtbot.waitUntil(lambda: runner.last is not None and runner.last.step >= 3, timeout=60_000)

    # pause: no step while paused
    panel.pause_button.setChecked(True)
    # the worker pauses first; the button follows when its "paused" signal arrives
    qtbot.waitUntil(
        lambda: runner.paused and panel.pause_button.text() == "Resume", timeout=10_000
    )
    held = runner.last.step
    qtbot.wait(600)
    assert runner.last.step == held
    panel.pause_button.setChecked(False)
    qtbot.waitUntil(lambda: runner.last.step > held, timeout=10_000)

    # cancel: at most the step under way finishes, then the checkpoint is written
    at_cancel = runner.last.step
    panel.cancel_button.click()
    wait_idle(runner, 60)
    qtbot.wait(250)  # no progress text ("Step 7/2000 ... ETA") replaces the outcome
    assert "ETA" not in panel.status.text() and not panel.status.text().startswith("Step")
    result = panel.result
    assert result.cancelled and result.steps_done < 2000
    assert result.steps_done - at_cancel <= 1, (at_cancel, result.steps_done)
    print(f"\ncancel: {result.steps_done - at_cancel} step(s) after Cancel")
    state = torch.load(tmp_path / "bb.pt", weights_only=True)
    assert state["format"] == "napari-pix2rep/backbone"
    assert state["meta"]["steps"] == result.steps_done == state["resume"]["step"]
    assert not list(tmp_path.glob(".bb.pt*"))  # no temporary file left behind

    # the UI is usable again; the run ended early, so it offers the checkpoint but the
    # model in use (the shipped backbone) stays, also for the next launch
    assert panel.start_button.isEnabled() and not panel.cancel_button.isEnabled()
    assert panel.preset_combo.isEnabled()
    shipped = widget.model_box.shipped
    assert widget.model_box.path == str(shipped)
    assert widget.settings.get("model/path", "") == str(shipped)
    assert len(panel.plot.values) >= 3
    assert any("is not the current model" in m for _, m in notes)
    assert panel.use_button.isVisibleTo(panel)
    panel.use_button.click()
    assert widget.model_box.path == str(tmp_path / "bb.pt")
    assert not panel.use_button.isVisibleTo(panel)
    # the model box says what is active, how far it was trained, and warns
    box = widget.model_box
    assert f"{result.steps_done} steps" in box.status.text()
    assert "1 open image (unlabelled)" in box.status.text()
    assert box.warning.isVisibleTo(box) and "Far less trained" in box.warning.text()
    box.use_shipped()
    assert not box.warning.isVisibleTo(box) and "12 500 steps" in box.status.text()


def test_gui_stays_responsive_while_pretraining(
    dock, phantom_layer, qtbot, tmp_path, wait_idle, notes
):
    from qtpy.QtCore import QTimer

    viewer, widget = dock
    panel = _setup(widget, tmp_path, 30)
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    from napari_pix2rep._qt.runner import WARM

    # the dock imports the training modules in the background when it opens
    qtbot.waitUntil(WARM.is_set, timeout=120_000)
    qtbot.wait(100)
    t0 = time.perf_counter()
    assert panel.start(SMALL_RUN)
    wait_idle(panel.runner, 180)
    elapsed = time.perf_counter() - t0
    timer.stop()
    ticks = [t for t in ticks if t >= t0]
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    max_gap_ms = 1000 * max(gaps)
    steps = panel.result.steps_done
    print(
        f"\nresponsiveness: {steps} tiny-preset steps in {elapsed:.1f} s, "
        f"{len(ticks)} timer ticks, max gap {max_gap_ms:.0f} ms"
    )
    assert steps == 30 and not panel.result.cancelled
    assert max_gap_ms < 150, f"GUI thread blocked for {max_gap_ms:.0f} ms"
    assert not [m for s, m in notes if s == "error"]


def test_pretrain_needs_data(dock, qtbot, tmp_path, notes):
    viewer, widget = dock
    panel = widget.pretrain_panel
    panel.folder_edit.setText("")
    assert not panel.start()
    assert any("No data to pretrain on" in m for s, m in notes if s == "error")
    panel.folder_edit.setText(str(tmp_path / "missing"))
    assert not panel.start()
    assert any("does not exist" in m for s, m in notes if s == "error")
    assert panel.start_button.isEnabled()
