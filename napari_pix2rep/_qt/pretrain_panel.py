"""Pretrain tab: Pix2Rep pretraining on open images and/or a folder, in the background.

Library calls: ``jobs.pretrain_job`` (``datafiles.find_training_images``, then
``pretrain.Pretrainer.steps``, which checkpoints atomically to the chosen file) in a
worker; Pause/Resume pause the worker between steps; Cancel stops at the next step and
the run's checkpoint is saved there. A finished run becomes the current model; one that
ended early does not switch by itself: the panel offers *Use this model*.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_pix2rep._qt import layers as L
from napari_pix2rep._qt.common import Links, notify_error, notify_info
from napari_pix2rep._qt.loss_plot import LossPlot
from napari_pix2rep._qt.model_box import ModelBox
from napari_pix2rep._qt.runner import JobRunner
from napari_pix2rep._qt.settings import Settings
from napari_pix2rep.core.choices import DOCK_LOSSES, PRESET_NAMES
from napari_pix2rep.core.progress import format_duration
from napari_pix2rep.io.datafiles import LABEL_NAMES


def default_output() -> str:
    return str(Path.home() / ".napari-pix2rep" / "pretrained.pt")


def free_name(path: Path) -> Path:
    """``path`` with the first free ``_2``, ``_3``... suffix (``pretrained_2.pt``)."""
    n = 2
    while (candidate := path.with_name(f"{path.stem}_{n}{path.suffix}")).exists():
        n += 1
    return candidate


class PretrainPanel(QWidget):
    """Pretrain a backbone without freezing the viewer."""

    #: the checkpoint path when a run ends (finished or cancelled)
    finished = Signal(str)

    def __init__(
        self,
        viewer: Any,
        model_box: ModelBox,
        settings: Settings,
        links: Links,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.model_box = model_box
        self.settings = settings
        self.links = links
        self.runner = JobRunner("pretraining")
        self.result = None

        outer = QVBoxLayout(self)
        outer.setContentsMargins(4, 4, 4, 4)
        outer.addWidget(self._data_box())
        outer.addWidget(self._run_box())
        outer.addLayout(self._buttons())
        for w in self._feedback():
            outer.addWidget(w)
        outer.addStretch(1)
        self._connect()
        links.connect(viewer.layers.events.inserted, self.refresh_layers)
        links.connect(viewer.layers.events.removed, self.refresh_layers)
        self.model_box.set_pretrained(self.output_path)
        self.refresh_layers()
        self._on_running(False)

    # ------------------------------------------------------------------ building
    def _data_box(self) -> QGroupBox:
        """Open images to tick, a folder, and file-name patterns to skip."""
        box = QGroupBox("Data (no labels needed)")
        dl = QVBoxLayout(box)
        self.layer_list = QListWidget()
        self.layer_list.setToolTip("Open images to pretrain on (tick them)")
        self.layer_list.setMaximumHeight(90)
        folder_row = QHBoxLayout()
        self.folder_edit = QLineEdit(self.settings.get("pretrain/folder", ""))
        self.folder_edit.setPlaceholderText("and/or a folder of NIfTI files (recursive)")
        self.folder_button = QPushButton("Folder…")
        folder_row.addWidget(self.folder_edit)
        folder_row.addWidget(self.folder_button)
        self.exclude_edit = QLineEdit(self.settings.get("pretrain/exclude", ""))
        self.exclude_edit.setToolTip(
            f"More file-name patterns to skip (label files, {LABEL_NAMES}, always are)"
        )
        dl.addWidget(QLabel("Open images"))
        dl.addWidget(self.layer_list)
        dl.addLayout(folder_row)
        ex_row = QHBoxLayout()
        ex_row.addWidget(QLabel("Skip"))
        ex_row.addWidget(self.exclude_edit)
        dl.addLayout(ex_row)
        return box

    def _run_box(self) -> QGroupBox:
        """Preset, loss, steps, batch, whether to start from the chosen model, the file."""
        settings = self.settings
        box = QGroupBox("Run")
        form = QFormLayout(box)
        self.preset_combo = QComboBox()
        self.preset_combo.addItems(PRESET_NAMES)
        self.preset_combo.setCurrentText(settings.get("pretrain/preset", "small"))
        self.preset_combo.setToolTip(
            "small: CPU-friendly (default); paper: the authors' network (GPU); tiny: tests"
        )
        self.loss_combo = QComboBox()
        self.loss_combo.addItems(DOCK_LOSSES)
        self.loss_combo.setCurrentText(settings.get("pretrain/loss", "infonce"))
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(1, 10_000_000)
        self.steps_spin.setSingleStep(100)
        self.steps_spin.setValue(settings.get("pretrain/steps", 1000))
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(1, 512)
        self.batch_spin.setValue(settings.get("pretrain/batch", 8))
        self.init_check = QCheckBox("Start from the chosen model")
        self.init_check.setToolTip(
            "Continue from the Model box's weights (its architecture is kept) instead of "
            "from scratch"
        )
        self.init_check.setChecked(self.model_box.info is not None)  # follows the model
        form.addRow("Preset", self.preset_combo)
        form.addRow("Loss", self.loss_combo)
        form.addRow("Steps", self.steps_spin)
        form.addRow("Batch", self.batch_spin)
        form.addRow(self.init_check)
        form.addRow("Save to", self._output_row())
        return box

    def _output_row(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.out_edit = QLineEdit(self.settings.get("pretrain/out", default_output()))
        self.out_edit.setToolTip("Checkpoint file, written atomically during the run")
        self.out_button = QPushButton("…")
        self.out_button.setMaximumWidth(30)
        row.addWidget(self.out_edit)
        row.addWidget(self.out_button)
        return row

    def _buttons(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.start_button = QPushButton("Start")
        self.pause_button = QPushButton("Pause")
        self.pause_button.setCheckable(True)
        self.cancel_button = QPushButton("Cancel")
        for b in (self.start_button, self.pause_button, self.cancel_button):
            row.addWidget(b)
        return row

    def _feedback(self) -> list[QWidget]:
        """The progress bar, the status line, *Use this model* and the loss plot."""
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.use_button = QPushButton("Use this model")
        self.use_button.setToolTip("Make the checkpoint of the run that ended early the model")
        self.use_button.setVisible(False)
        self.plot = LossPlot()
        return [self.progress, self.status, self.use_button, self.plot]

    def _connect(self) -> None:
        """Buttons, remembered settings, the model box and the runner to their slots."""
        self.folder_button.clicked.connect(self.browse_folder)
        self.out_button.clicked.connect(self.browse_output)
        self.start_button.clicked.connect(self.start)
        self.pause_button.toggled.connect(self._pause_toggled)
        self.cancel_button.clicked.connect(self.cancel)
        self.use_button.clicked.connect(self.use_result)
        self.model_box.model_changed.connect(self._model_changed)
        for w in (self.folder_edit, self.exclude_edit, self.out_edit):
            w.editingFinished.connect(self._remember)
        for c in (self.preset_combo, self.loss_combo):
            c.currentTextChanged.connect(self._remember)
        for sp in (self.steps_spin, self.batch_spin):
            sp.valueChanged.connect(self._remember)
        self.runner.progress.connect(self._on_progress)
        self.runner.done.connect(self._on_done)
        self.runner.failed.connect(self._on_failed)
        self.runner.running_changed.connect(self._on_running)
        self.runner.paused_changed.connect(self._on_paused)

    # ------------------------------------------------------------------ inputs
    def refresh_layers(self, *_: Any) -> None:
        checked = set(self.checked_layer_names())
        self.layer_list.clear()
        for layer in L.image_layers(self.viewer):
            item = QListWidgetItem(layer.name)
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            item.setCheckState(Qt.Checked if layer.name in checked else Qt.Unchecked)
            self.layer_list.addItem(item)

    def checked_layer_names(self) -> list[str]:
        out = []
        for i in range(self.layer_list.count()):
            item = self.layer_list.item(i)
            if item.checkState() == Qt.Checked:
                out.append(item.text())
        return out

    def set_checked_layers(self, names: list[str]) -> None:
        for i in range(self.layer_list.count()):
            item = self.layer_list.item(i)
            item.setCheckState(Qt.Checked if item.text() in names else Qt.Unchecked)

    @property
    def output_path(self) -> str:
        return self.out_edit.text().strip() or default_output()

    def browse_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Folder of NIfTI images", self.folder_edit.text() or str(Path.home())
        )
        if folder:
            self.folder_edit.setText(folder)
            self._remember()

    def browse_output(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save the pretrained backbone", self.output_path, "PyTorch model (*.pt)"
        )
        if path:
            self.out_edit.setText(path)
            self._remember()

    def _remember(self, *_: Any) -> None:
        s = self.settings
        s.set("pretrain/folder", self.folder_edit.text().strip())
        s.set("pretrain/exclude", self.exclude_edit.text().strip())
        s.set("pretrain/out", self.out_edit.text().strip())
        s.set("pretrain/preset", self.preset_combo.currentText())
        s.set("pretrain/loss", self.loss_combo.currentText())
        s.set("pretrain/steps", self.steps_spin.value())
        s.set("pretrain/batch", self.batch_spin.value())
        self.model_box.set_pretrained(self.output_path)

    def config(self) -> dict:
        """PretrainConfig keyword arguments (plain values)."""
        return {
            "preset": self.preset_combo.currentText(),
            "loss": self.loss_combo.currentText(),
            "steps": self.steps_spin.value(),
            "batch_size": self.batch_spin.value(),
        }

    # ------------------------------------------------------------------ control
    def start(self, config_overrides: dict | None = None) -> bool:
        """Start pretraining (``config_overrides``: extra PretrainConfig fields, for tests)."""
        from napari_pix2rep.jobs import pretrain_job

        if self.runner.running:
            return False
        self._remember()
        volumes = []
        for name in self.checked_layer_names():
            layer = L.find_layer(self.viewer, name)
            if layer is not None and L.is_image(layer):
                volumes.append((np.asarray(layer.data), L.spacing(layer), layer.name))
        folder = self.folder_edit.text().strip()
        inputs = [folder] if folder else []
        if not volumes and not inputs:
            notify_error("No data to pretrain on: tick image layers or choose a folder.")
            return False
        if folder and not Path(folder).is_dir():
            notify_error(f"The folder {folder} does not exist.")
            return False
        out = Path(self.output_path).expanduser()
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            notify_error(exc)
            return False
        kept = ""
        if self.model_box.path and out.resolve() == Path(self.model_box.path).resolve():
            kept = f" ({out.name} is the model in use and stays as it is)"
            out = free_name(out)
            self.out_edit.setText(str(out))
            self._remember()
        init = None
        if self.init_check.isChecked():
            init = self.model_box.path or None
            if init is None:
                notify_error("Start from the chosen model is ticked but no model is chosen.")
                return False
        exclude = [g.strip() for g in self.exclude_edit.text().split(",") if g.strip()]
        cfg = {**self.config(), **(config_overrides or {})}
        self.plot.clear()
        self.result = None
        self.use_button.setVisible(False)
        # an empty bar until the first step, not Qt's busy indicator: its animation
        # repaints the whole window 30 times a second (~18 ms each, software OpenGL)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status.setText(f"Preparing the data; saving to {out.name}{kept}…")
        self.runner.start(
            pretrain_job, volumes, inputs, str(out), cfg, self.model_box.device, init, exclude
        )
        return True

    def cancel(self) -> None:
        if self.runner.stop():
            self.status.setText("Stopping after this step; the checkpoint will be saved…")

    def _pause_toggled(self, on: bool) -> None:
        if not self.runner.running:
            return
        if on:
            self.runner.pause()
            self.status.setText("Pausing after this step…")
        else:
            self.runner.resume()

    # ------------------------------------------------------------------ worker results
    def _on_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.pause_button.setEnabled(running)
        self.cancel_button.setEnabled(running)
        for w in (
            self.preset_combo,
            self.loss_combo,
            self.steps_spin,
            self.batch_spin,
            self.init_check,
            self.out_edit,
            self.out_button,
            self.folder_edit,
            self.folder_button,
            self.layer_list,
            self.exclude_edit,
        ):
            w.setEnabled(not running)
        if not running:
            self.pause_button.blockSignals(True)
            self.pause_button.setChecked(False)
            self.pause_button.setText("Pause")
            self.pause_button.blockSignals(False)
            self.progress.setRange(0, max(1, self.progress.maximum()))

    def _on_paused(self, paused: bool) -> None:
        self.pause_button.blockSignals(True)
        self.pause_button.setChecked(paused)
        self.pause_button.setText("Resume" if paused else "Pause")
        self.pause_button.blockSignals(False)
        if paused:
            self.status.setText(f"Paused at step {getattr(self.runner.last, 'step', 0)}.")

    def _on_progress(self, p: Any, losses: list[float]) -> None:
        total = max(1, int(p.total))
        self.progress.setRange(0, total)
        self.progress.setValue(min(int(p.step), total))
        if p.stage == "loading":
            self.status.setText(f"Preparing data {p.step}/{p.total} {p.message}")
            return
        if p.stage != "pretrain":  # "note" (a stale lock taken over), "start" (the run)
            self.status.setText(p.message)
            return
        self.plot.extend(losses)
        rate = f" · {p.rate:.1f} slices/s" if p.rate else ""
        self.status.setText(
            f"Step {p.step}/{p.total} · loss {p.loss:.3f}{rate} · ETA {format_duration(p.eta_s)}"
        )

    def _on_failed(self, message: str) -> None:
        self.status.setText(message)
        notify_error(message)

    def _on_done(self, result: Any) -> None:
        self.result = result
        if result.path is None:
            self.status.setText("Cancelled before the first step; nothing was saved.")
            notify_info("Pretraining cancelled before the first step; nothing was saved.")
            return
        path = str(result.path)
        self.model_box.set_pretrained(path)
        ran = (
            f"at step {result.steps_done}/{result.steps_total} "
            f"({format_duration(result.seconds)}); saved {Path(path).name}"
        )
        if result.cancelled:  # ended early: the user decides whether to switch
            self.status.setText(
                f"Pretraining stopped {ran}. The model in use is unchanged; press Use this "
                "model to segment with the checkpoint."
            )
            self.use_button.setVisible(True)
            notify_info(
                f"Pretraining stopped at step {result.steps_done}; {Path(path).name} was "
                "saved but is not the current model (Use this model switches to it)."
            )
        else:
            self.model_box.set_path(path)
            self.status.setText(f"Pretraining finished {ran}; it is the current model.")
            notify_info(
                f"Pretraining finished ({result.steps_done} steps); {Path(path).name} is now "
                "the current model."
            )
        self.finished.emit(path)

    def use_result(self) -> None:
        """Make the last run's checkpoint the current model (offered when it ended early)."""
        if self.result is None or self.result.path is None:
            return
        self.model_box.set_path(str(self.result.path))
        self.use_button.setVisible(False)
        self.status.setText(f"{Path(self.result.path).name} is now the current model.")

    def _model_changed(self, *_: Any) -> None:
        """Start from the chosen model by default whenever a model file is chosen."""
        self.init_check.setChecked(self.model_box.info is not None)
        if self.result is not None and str(self.result.path) == self.model_box.path:
            self.use_button.setVisible(False)
