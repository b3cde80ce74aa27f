"""The Segment tab's widgets and their settings: what the user chose, shown and remembered.

:class:`SegmentForm` builds the three boxes (image and annotations; Segment; correct,
repeat, export), the class legend, the mode and advanced settings (kept in
:class:`~napari_pix2rep._qt.settings.Settings`) and the progress line. It knows no
viewer and no job: :class:`~napari_pix2rep._qt.segment_panel.SegmentPanel` adds those.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from napari_pix2rep._qt.common import compact_combo, notify_error
from napari_pix2rep._qt.settings import Settings
from napari_pix2rep.core.classes import (
    DEFAULT_CLASSES,
    class_colors,
    format_classes,
    parse_classes,
)
from napari_pix2rep.core.progress import format_duration
from napari_pix2rep.segment.settings import SegmentSettings

STAGE_NAMES = {
    "carry": "Propagating",
    "features": "Computing features",
    "probe": "Linear probe",
    "finetune": "Fine-tuning",
    "local-contrast": "Local contrastive stage",
    "predict": "Segmenting",
    "fuse": "Fusing the phases",
}


def _button(text: str, tip: str = "") -> QPushButton:
    button = QPushButton(text)
    if tip:
        button.setToolTip(tip)
    return button


def _spin(low: int, high: int, step: int, value: int, tip: str) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(low, high)
    spin.setSingleStep(step)
    spin.setValue(value)
    spin.setToolTip(tip)
    return spin


def legend_html(names: tuple[str, ...]) -> str:
    """One coloured square, label value and name per class (background hollow)."""
    parts = []
    for i, (name, rgba) in enumerate(zip(names, class_colors(len(names)).values())):
        r, g, b = (int(255 * c) for c in rgba[:3])
        swatch = "&#9633;" if i == 0 else f"<span style='color:rgb({r},{g},{b})'>&#9632;</span>"
        parts.append(f"{swatch} {i} {html.escape(name)}")
    return "&nbsp; ".join(parts)


def summary_html(pairs: list[tuple[str, str, str]], has_image: bool) -> str:
    """The "Annotated:" line: per ``(image name, annotation name, slices)`` one row, else
    what to do first."""
    lines = [
        f"<b>{html.escape(ann)}</b> ({html.escape(img)}): {html.escape(text)}"
        for img, ann, text in pairs
    ]
    if not lines:
        text = (
            "No annotation layer for this image yet: press New annotation layer and "
            "paint a few slices."
            if has_image
            else "Open a 3D or 4D image (File > Open, or File > Open Sample > Pix2Rep)."
        )
        lines = [html.escape(text)]
    return "Annotated: " + "<br>".join(lines)


class SegmentForm(QWidget):
    """The Segment tab's controls, their settings and the progress line."""

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        outer = QVBoxLayout(self)
        outer.setContentsMargins(4, 4, 4, 4)
        outer.addWidget(self._data_box())
        outer.addWidget(self._train_box())
        outer.addWidget(self._after_box())
        outer.addStretch(1)
        for signal in (
            self.linear_radio.toggled,
            self.steps_spin.valueChanged,
            self.crop_spin.valueChanged,
            self.uncertainty_check.toggled,
            self.all_images_check.toggled,
            self.localise_check.toggled,
            self.propagate_check.toggled,
        ):
            signal.connect(self._remember)
        self.advanced_toggle.toggled.connect(self._toggle_advanced)
        self._toggle_advanced(False)
        self._update_legend()

    # ------------------------------------------------------------------ boxes
    def _data_box(self) -> QGroupBox:
        s = self.settings
        box = QGroupBox("1. Image and annotations")
        form = QFormLayout(box)
        self.image_combo = compact_combo(QComboBox())
        self.image_combo.setToolTip("The 3D or 4D image to segment")
        self.classes_edit = QLineEdit(s.get("segment/classes", format_classes(DEFAULT_CLASSES)))
        self.classes_edit.setToolTip(
            "Label names in order, comma-separated: label 0 first (background), then 1, 2, ..."
        )
        self.classes_legend = QLabel()
        self.classes_legend.setWordWrap(True)
        self.new_annotation_button = _button(
            "New annotation layer",
            "An empty labels layer on the image's grid; paint a few slices fully "
            "(any painted slice counts as annotated, 0 = background there)",
        )
        self.annotation_combo = compact_combo(QComboBox())
        self.annotation_combo.setToolTip("The labels layer whose painted slices teach the model")
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.all_images_check = QCheckBox("Learn from all annotated images")
        self.all_images_check.setToolTip(
            "Also train on the annotation layers made here for other open images"
        )
        self.all_images_check.setChecked(s.get("segment/all_images", True))
        form.addRow("Image", self.image_combo)
        form.addRow("Classes", self.classes_edit)
        form.addRow("", self.classes_legend)
        form.addRow(self.new_annotation_button)
        form.addRow("Annotations", self.annotation_combo)
        form.addRow(self.summary)
        form.addRow(self.all_images_check)
        return box

    def _train_box(self) -> QGroupBox:
        box = QGroupBox("2. Segment")
        tl = QVBoxLayout(box)
        tl.addLayout(self._mode_row())
        self.advanced_toggle = QToolButton()
        self.advanced_toggle.setCheckable(True)
        self.advanced_toggle.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        self.advanced_toggle.setAutoRaise(True)
        self.advanced = self._advanced()
        tl.addWidget(self.advanced_toggle)
        tl.addWidget(self.advanced)
        run_row = QHBoxLayout()
        self.segment_button = _button(
            "Segment",
            "Learn from the annotated slices and segment every slice and frame of the image",
        )
        self.cancel_button = _button("Cancel")
        self.cancel_button.setEnabled(False)
        run_row.addWidget(self.segment_button, 2)
        run_row.addWidget(self.cancel_button, 1)
        tl.addLayout(run_row)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        tl.addWidget(self.progress)
        tl.addWidget(self.status)
        return box

    def _mode_row(self) -> QHBoxLayout:
        """Linear probe or fine-tune."""
        mode_row = QHBoxLayout()
        self.linear_radio = QRadioButton("Linear probe")
        self.linear_radio.setToolTip("Fast: fits only a 1x1 classifier on the model's features")
        self.finetune_radio = QRadioButton("Fine-tune")
        self.finetune_radio.setToolTip("Slower and usually better: trains the whole network")
        self.mode_group = QButtonGroup(self)
        for radio in (self.linear_radio, self.finetune_radio):
            self.mode_group.addButton(radio)
            mode_row.addWidget(radio)
        self.set_mode(self.settings.get("segment/mode", "linear"))
        return mode_row

    def _advanced(self) -> QWidget:
        """Steps, crop size, uncertainty, heart region, carrying slices between phases."""
        s = self.settings
        advanced = QWidget()
        adv = QFormLayout(advanced)
        adv.setContentsMargins(16, 0, 0, 0)
        self.steps_spin = _spin(
            10,
            100_000,
            50,
            s.get("segment/steps", 300),
            "Optimisation steps (linear probe and fine-tuning)",
        )
        self.crop_spin = _spin(
            32, 512, 16, s.get("segment/crop", 128), "Fine-tuning crop size in pixels (model grid)"
        )
        self.uncertainty_check = QCheckBox("Show an uncertainty layer")
        self.uncertainty_check.setChecked(s.get("segment/uncertainty", False))
        self.localise_check = QCheckBox("Segment the heart region only")
        self.localise_check.setToolTip(
            "Where the painted slices (or the cine's motion) put the heart; fewer false "
            "positives far from it."
        )
        self.localise_check.setChecked(s.get("segment/localise", True))
        self.propagate_check = QCheckBox("Carry painted slices to the other phases")
        self.propagate_check.setToolTip(
            "Register ED's painted slices onto ES (and ES's onto ED) to learn from, and "
            "fuse each phase's masks with the other's."
        )
        self.propagate_check.setChecked(s.get("segment/propagate", True))
        adv.addRow("Steps", self.steps_spin)
        adv.addRow("Crop", self.crop_spin)
        adv.addRow(self.uncertainty_check)
        adv.addRow(self.localise_check)
        adv.addRow(self.propagate_check)
        return advanced

    def _after_box(self) -> QGroupBox:
        box = QGroupBox("3. Correct, repeat, export")
        grid = QGridLayout(box)
        self.corrections_button = _button(
            "Use corrections",
            "Copy the slices you edited in the segmentation layer into the annotation "
            "layer (nothing is learned from edits otherwise); then press Segment again",
        )
        self.suggest_button = _button(
            "Suggest next slice",
            "Go to the slice where the model is least sure inside the predicted heart",
        )
        self.predict_button = _button(
            "Predict with current",
            "Segment the chosen image with the segmenter already trained (no training)",
        )
        self.save_model_button = _button("Save segmenter…")
        self.export_button = _button(
            "Export NIfTI…", "Save the segmentation layer as NIfTI with the image's header"
        )
        grid.addWidget(self.corrections_button, 0, 0)
        grid.addWidget(self.suggest_button, 0, 1)
        grid.addWidget(self.predict_button, 1, 0)
        grid.addWidget(self.save_model_button, 1, 1)
        grid.addWidget(self.export_button, 2, 0, 1, 2)
        return box

    # ------------------------------------------------------------------ classes
    def classes(self) -> tuple[str, ...]:
        return parse_classes(self.classes_edit.text())

    def classes_or_default(self) -> tuple[str, ...]:
        try:
            return self.classes()
        except ValueError:
            return DEFAULT_CLASSES

    def take_classes(self) -> tuple[str, ...] | None:
        """After the class list was edited: tidy and remember it (None, and an error
        notification, when it is not a valid list)."""
        try:
            names = self.classes()
        except ValueError as exc:
            notify_error(exc)
            self._update_legend()
            return None
        self.classes_edit.setText(format_classes(names))
        self.settings.set("segment/classes", format_classes(names))
        self._update_legend()
        return names

    def _update_legend(self) -> None:
        try:
            self.classes_legend.setText(legend_html(self.classes()))
        except ValueError as exc:
            self.classes_legend.setText(html.escape(str(exc)))

    # ------------------------------------------------------------------ settings
    @property
    def mode(self) -> str:
        return "finetune" if self.finetune_radio.isChecked() else "linear"

    def set_mode(self, mode: str) -> None:
        (self.finetune_radio if mode == "finetune" else self.linear_radio).setChecked(True)

    def _toggle_advanced(self, on: bool) -> None:
        """Show or hide the advanced settings (they apply either way)."""
        self.advanced.setVisible(on)
        self.advanced_toggle.setArrowType(Qt.DownArrow if on else Qt.RightArrow)
        self._advanced_title()

    def _advanced_title(self) -> None:
        self.advanced_toggle.setText(
            f"Advanced: steps {self.steps_spin.value()}, crop {self.crop_spin.value()}"
        )

    def _remember(self, *_: Any) -> None:
        self._advanced_title()
        s = self.settings
        s.set("segment/mode", self.mode)
        s.set("segment/steps", self.steps_spin.value())
        s.set("segment/crop", self.crop_spin.value())
        s.set("segment/uncertainty", self.uncertainty_check.isChecked())
        s.set("segment/all_images", self.all_images_check.isChecked())
        s.set("segment/localise", self.localise_check.isChecked())
        s.set("segment/propagate", self.propagate_check.isChecked())

    def ask_save_path(self, title: str, name: str, filt: str, folder: str = "") -> str:
        """A save dialog starting in the last export folder (else ``folder``, else home)."""
        folder = self.settings.get("segment/export_dir", "") or folder
        start = str(Path(folder or Path.home()) / name)
        path, _ = QFileDialog.getSaveFileName(self, title, start, filt)
        if path:
            self.settings.set("segment/export_dir", str(Path(path).parent))
        return path

    def segment_settings(self, train: bool = True) -> SegmentSettings:
        """The Segment recipe's settings from the form (``train`` False: predict only)."""
        if not train:
            return SegmentSettings(train=False, localise=self.localise_check.isChecked())
        steps = self.steps_spin.value()
        training = {
            "mode": self.mode,
            "classes": self.classes(),
            "probe_steps": steps,
            "ft_steps": steps,
            "crop": self.crop_spin.value(),
        }
        return SegmentSettings(
            training=training,
            localise=self.localise_check.isChecked(),
            propagate=self.propagate_check.isChecked(),
        )

    # ------------------------------------------------------------------ progress
    def show_running(self, running: bool, stopped: bool) -> None:
        """Cancel while a job runs; after it, a full bar (empty when it was stopped)."""
        self.cancel_button.setEnabled(running)
        if not running:
            self.progress.setRange(0, 1)
            self.progress.setValue(0 if stopped else 1)

    def show_progress(self, p: Any) -> None:
        """One step of a job (stage, step, total, loss, message, eta_s) in the bar and line."""
        total = max(1, int(p.total))
        self.progress.setRange(0, total)
        self.progress.setValue(min(int(p.step), total))
        text = f"{STAGE_NAMES.get(p.stage, p.stage)} {p.step}/{p.total}"
        if p.loss is not None:
            text += f" · loss {p.loss:.3f}"
        if p.message:
            text += f" · {p.message}"
        if getattr(p, "eta_s", None) is not None and p.step < p.total:
            text += f" · about {format_duration(p.eta_s)} left"
        self.status.setText(text)
