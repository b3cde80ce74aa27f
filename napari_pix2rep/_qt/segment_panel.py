"""Segment tab: annotation layer, Segment / Cancel, corrections, suggestion, export.

Library calls: ``jobs.segment_job`` (heart region, painted slices carried by
``loop.carry_iter``, ``segment.train_segmenter_iter``, ``predict.predict_volume``) in a
worker; ``loop.annotation_summary`` for the list of annotated slices;
``session.edited_slices`` / ``slice_update`` and ``loop.corrected_background`` for "Use
corrections" (an emptied slice becomes background-only, in the layer's
``metadata["pix2rep_background_slices"]``); ``session.suggest_slice``;
``_writer.write_labels`` (``nifti.write_nifti``) for the export; ``Segmenter.save``.
"""

from __future__ import annotations

import html
import weakref
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import Qt, QTimer
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

from ..annotations import AnnotationError
from ..classes import DEFAULT_CLASSES, class_colors, format_classes, parse_classes
from ..edits import edited_slices, format_positions, slice_update, suggest_slice
from ..layer_meta import METADATA_KEY
from ..loop import (
    BACKGROUND_KEY,
    annotation_summary,
    background_of,
    corrected_background,
    on_same_grid,
)
from . import layers as L
from .common import Links, compact_combo, fmt_seconds, notify_error, notify_info
from .model_box import ModelBox
from .runner import JobRunner
from .settings import Settings

STAGE_NAMES = {
    "carry": "Propagating",
    "features": "Computing features",
    "probe": "Linear probe",
    "finetune": "Fine-tuning",
    "local-contrast": "Local contrastive stage",
    "predict": "Segmenting",
}


class SegmentPanel(QWidget):
    """Annotate a few slices, segment every slice and frame, correct, repeat, export."""

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
        self.runner = JobRunner("segmentation")
        self.segmenter = None  # the last trained Segmenter, kept for re-use
        self.segmenter_source = ""  # which image it learned from (for the status line)
        # per segmentation layer: the last prediction written to it (labels) and its
        # uncertainty (float16), to tell the user's edits apart and suggest slices
        self.last_prediction: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.last_uncertainty: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._job_image: str | None = None
        self._job_kind = ""
        self._job_layer: Any = None  # the segmentation layer made for the running job

        outer = QVBoxLayout(self)
        outer.setContentsMargins(4, 4, 4, 4)

        # -- data ---------------------------------------------------------------------
        data_box = QGroupBox("1. Image and annotations")
        form = QFormLayout(data_box)
        self.image_combo = compact_combo(QComboBox())
        self.image_combo.setToolTip("The 3D or 4D image to segment")
        self.classes_edit = QLineEdit(
            settings.get("segment/classes", format_classes(DEFAULT_CLASSES))
        )
        self.classes_edit.setToolTip(
            "Label names in order, comma-separated: label 0 first (background), then 1, 2, ..."
        )
        self.classes_legend = QLabel()
        self.classes_legend.setWordWrap(True)
        self.new_annotation_button = QPushButton("New annotation layer")
        self.new_annotation_button.setToolTip(
            "An empty labels layer on the image's grid; paint a few slices fully "
            "(any painted slice counts as annotated, 0 = background there)"
        )
        self.annotation_combo = compact_combo(QComboBox())
        self.annotation_combo.setToolTip("The labels layer whose painted slices teach the model")
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.all_images_check = QCheckBox("Learn from all annotated images")
        self.all_images_check.setToolTip(
            "Also train on the annotation layers made here for other open images"
        )
        self.all_images_check.setChecked(settings.get("segment/all_images", True))
        form.addRow("Image", self.image_combo)
        form.addRow("Classes", self.classes_edit)
        form.addRow("", self.classes_legend)
        form.addRow(self.new_annotation_button)
        form.addRow("Annotations", self.annotation_combo)
        form.addRow(self.summary)
        form.addRow(self.all_images_check)
        outer.addWidget(data_box)

        # -- training -----------------------------------------------------------------
        train_box = QGroupBox("2. Segment")
        tl = QVBoxLayout(train_box)
        mode_row = QHBoxLayout()
        self.linear_radio = QRadioButton("Linear probe")
        self.linear_radio.setToolTip("Fast: fits only a 1x1 classifier on the model's features")
        self.finetune_radio = QRadioButton("Fine-tune")
        self.finetune_radio.setToolTip("Slower and usually better: trains the whole network")
        self.mode_group = QButtonGroup(self)
        self.mode_group.addButton(self.linear_radio)
        self.mode_group.addButton(self.finetune_radio)
        (
            self.finetune_radio
            if settings.get("segment/mode", "linear") == "finetune"
            else self.linear_radio
        ).setChecked(True)
        mode_row.addWidget(self.linear_radio)
        mode_row.addWidget(self.finetune_radio)
        tl.addLayout(mode_row)

        self.advanced_toggle = QToolButton()
        self.advanced_toggle.setCheckable(True)
        self.advanced_toggle.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        self.advanced_toggle.setArrowType(Qt.RightArrow)
        self.advanced_toggle.setAutoRaise(True)
        self.advanced = QWidget()
        adv = QFormLayout(self.advanced)
        adv.setContentsMargins(16, 0, 0, 0)
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(10, 100_000)
        self.steps_spin.setSingleStep(50)
        self.steps_spin.setValue(settings.get("segment/steps", 300))
        self.steps_spin.setToolTip("Optimisation steps (linear probe and fine-tuning)")
        self.crop_spin = QSpinBox()
        self.crop_spin.setRange(32, 512)
        self.crop_spin.setSingleStep(16)
        self.crop_spin.setValue(settings.get("segment/crop", 128))
        self.crop_spin.setToolTip("Fine-tuning crop size in pixels (model grid)")
        self.uncertainty_check = QCheckBox("Show an uncertainty layer")
        self.uncertainty_check.setChecked(settings.get("segment/uncertainty", False))
        adv.addRow("Steps", self.steps_spin)
        adv.addRow("Crop", self.crop_spin)
        adv.addRow(self.uncertainty_check)
        self._toggle_advanced(False)
        self.advanced_toggle.toggled.connect(self._toggle_advanced)
        tl.addWidget(self.advanced_toggle)
        tl.addWidget(self.advanced)

        run_row = QHBoxLayout()
        self.segment_button = QPushButton("Segment")
        self.segment_button.setToolTip(
            "Learn from the annotated slices and segment every slice and frame of the image"
        )
        self.cancel_button = QPushButton("Cancel")
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
        outer.addWidget(train_box)

        # -- after --------------------------------------------------------------------
        after_box = QGroupBox("3. Correct, repeat, export")
        grid = QGridLayout(after_box)
        self.corrections_button = QPushButton("Use corrections")
        self.corrections_button.setToolTip(
            "Copy the slices you edited in the segmentation layer into the annotation "
            "layer (nothing is learned from edits otherwise); then press Segment again"
        )
        self.suggest_button = QPushButton("Suggest next slice")
        self.suggest_button.setToolTip(
            "Go to the slice where the model is least sure inside the predicted heart"
        )
        self.predict_button = QPushButton("Predict with current")
        self.predict_button.setToolTip(
            "Segment the chosen image with the segmenter already trained (no training)"
        )
        self.save_model_button = QPushButton("Save segmenter…")
        self.export_button = QPushButton("Export NIfTI…")
        self.export_button.setToolTip(
            "Save the segmentation layer as NIfTI with the image's header"
        )
        grid.addWidget(self.corrections_button, 0, 0)
        grid.addWidget(self.suggest_button, 0, 1)
        grid.addWidget(self.predict_button, 1, 0)
        grid.addWidget(self.save_model_button, 1, 1)
        grid.addWidget(self.export_button, 2, 0, 1, 2)
        outer.addWidget(after_box)
        outer.addStretch(1)

        # -- wiring -------------------------------------------------------------------
        self.image_combo.currentTextChanged.connect(self._image_changed)
        self.annotation_combo.currentTextChanged.connect(lambda _: self.schedule_summary())
        self.classes_edit.editingFinished.connect(self._classes_edited)
        self.new_annotation_button.clicked.connect(self.new_annotation_layer)
        self.segment_button.clicked.connect(self.segment)
        self.cancel_button.clicked.connect(self.cancel)
        self.corrections_button.clicked.connect(self.use_corrections)
        self.suggest_button.clicked.connect(self.suggest_next_slice)
        self.predict_button.clicked.connect(self.predict_with_current)
        self.save_model_button.clicked.connect(lambda: self.save_segmenter())
        self.export_button.clicked.connect(lambda: self.export_segmentation())
        self.linear_radio.toggled.connect(self._remember)
        self.steps_spin.valueChanged.connect(self._remember)
        self.crop_spin.valueChanged.connect(self._remember)
        self.uncertainty_check.toggled.connect(self._remember)
        self.all_images_check.toggled.connect(self._remember)
        self.runner.progress.connect(self._on_progress)
        self.runner.done.connect(self._on_done)
        self.runner.failed.connect(self._on_failed)
        self.runner.running_changed.connect(self._on_running)

        self._summary_timer = QTimer(self)
        self._summary_timer.setSingleShot(True)
        self._summary_timer.setInterval(300)
        self._summary_timer.timeout.connect(self.refresh_summary)

        links.connect(viewer.layers.events.inserted, self._on_layers_changed)
        links.connect(viewer.layers.events.removed, self._on_layers_changed)
        for layer in viewer.layers:
            self._watch(layer)
        self._update_legend()
        self.refresh_layers()

    # ------------------------------------------------------------------ layer lists
    def _watch(self, layer: Any) -> None:
        self.links.connect(layer.events.name, self._on_layers_changed)
        if L.is_labels(layer):
            self.links.connect(layer.events.paint, self._on_paint)
            self.links.connect(layer.events.data, self._on_paint)

    def _on_layers_changed(self, event: Any = None) -> None:
        if event is not None and getattr(event, "type", "") == "inserted":
            self._watch(event.value)
        self.refresh_layers()

    def _on_paint(self, event: Any = None) -> None:
        self.schedule_summary()

    def refresh_layers(self) -> None:
        """Refill the image and annotation choices (keeping the current ones)."""
        current = self.image_combo.currentText()
        names = [ly.name for ly in L.image_layers(self.viewer)]
        self.image_combo.blockSignals(True)
        self.image_combo.clear()
        self.image_combo.addItems(names)
        if current in names:
            self.image_combo.setCurrentText(current)
        self.image_combo.blockSignals(False)
        self._image_changed()

    def _image_changed(self, *_: Any) -> None:
        image = self.current_image()
        current = self.annotation_combo.currentText()
        self.annotation_combo.blockSignals(True)
        self.annotation_combo.clear()
        names = [ly.name for ly in L.annotation_candidates(self.viewer, image)] if image else []
        self.annotation_combo.addItems(names)
        if current in names:
            self.annotation_combo.setCurrentText(current)
        self.annotation_combo.blockSignals(False)
        self._update_buttons()
        self.schedule_summary()

    def current_image(self) -> Any | None:
        layer = L.find_layer(self.viewer, self.image_combo.currentText())
        return layer if layer is not None and L.is_image(layer) else None

    def current_annotation(self) -> Any | None:
        layer = L.find_layer(self.viewer, self.annotation_combo.currentText())
        image = self.current_image()
        if layer is None or image is None or not L.is_labels(layer):
            return None
        return layer if tuple(layer.data.shape) == tuple(image.data.shape) else None

    def segmentation_layer(self) -> Any | None:
        image = self.current_image()
        return L.linked_layer(self.viewer, image, L.SEGMENTATION) if image else None

    # ------------------------------------------------------------------ summary
    def schedule_summary(self) -> None:
        self._summary_timer.start()

    def _annotation_pairs(self) -> list[tuple[Any, Any]]:
        """(image, annotation layer) pairs that training would use, chosen pair first."""
        image, ann = self.current_image(), self.current_annotation()
        pairs = [(self._owner(ann, image), ann)] if image is not None and ann is not None else []
        if self.all_images_check.isChecked():
            for layer in self.viewer.layers:
                if not L.is_labels(layer) or L.role(layer) != L.ANNOTATION or L.same(layer, ann):
                    continue
                img = L.find_layer(self.viewer, L.linked_image(layer))
                if img is None or L.same(img, image) or not L.is_image(img):
                    continue
                if tuple(img.data.shape) == tuple(layer.data.shape) and (
                    np.any(layer.data) or self.background(layer)
                ):
                    pairs.append((img, layer))
        return pairs

    def _owner(self, ann: Any, image: Any) -> Any:
        """The image an annotation layer was painted on: the one the dock made it for when
        that is open on the same grid (ED's annotations chosen for ES teach on ED, and
        are carried to ES), else ``image``."""
        owner = L.find_layer(self.viewer, L.linked_image(ann))
        if L.role(ann) != L.ANNOTATION or owner is None or not L.is_image(owner):
            return image
        return owner if tuple(owner.data.shape) == tuple(ann.data.shape) else image

    def _own_annotation(self, image: Any) -> Any | None:
        """The chosen annotation layer when it was painted on ``image``, else the one the
        dock made for ``image`` (None: none): corrections of ES never go into ED's."""
        ann = self.current_annotation()
        if ann is not None and L.same(self._owner(ann, image), image):
            return ann
        return L.linked_layer(self.viewer, image, L.ANNOTATION) if image is not None else None

    @staticmethod
    def background(layer: Any) -> set[int]:
        """The background-only slices (flat indices) of an annotation layer."""
        shape = np.shape(layer.data)
        return background_of(layer.metadata, int(np.prod(shape[:-2])))

    def _job_inputs(self, image: Any, pairs: list[tuple[Any, Any]]) -> dict:
        """What segment_job needs beyond the arrays: background-only slices, which pair
        annotates ``image`` itself, and which pairs are other phases on its grid."""
        meta = (image.metadata or {}).get(METADATA_KEY) or {}

        def grid_of(layer: Any) -> tuple:
            m = (layer.metadata or {}).get(METADATA_KEY) or {}
            return tuple(layer.data.shape), L.spacing(layer), m.get("affine")

        own = next((k for k, (img, _) in enumerate(pairs) if L.same(img, image)), None)
        target = (tuple(image.data.shape), L.spacing(image), meta.get("affine"))
        return {
            "background": [self.background(ann) for _, ann in pairs],
            "own": own,
            "on_grid": [on_same_grid(*grid_of(img), *target) for img, _ in pairs],
        }

    def refresh_summary(self) -> str:
        """Show which layers are annotated and on which slices (per frame for 4D)."""
        self._summary_timer.stop()
        lines = []
        for img, ann in self._annotation_pairs():
            positions, empty = annotation_summary(np.asarray(ann.data), self.background(ann))
            text = format_positions(positions)
            if empty:
                text += f" (background only: {format_positions(empty)})"
            lines.append(
                f"<b>{html.escape(ann.name)}</b> ({html.escape(img.name)}): {html.escape(text)}"
            )
        if not lines:
            text = (
                "No annotation layer for this image yet: press New annotation layer and "
                "paint a few slices."
                if self.current_image() is not None
                else "Open a 3D or 4D image (File > Open, or File > Open Sample > Pix2Rep)."
            )
            lines = [html.escape(text)]
        self.summary.setText("Annotated: " + "<br>".join(lines) if lines else "")
        return self.summary.text()

    # ------------------------------------------------------------------ classes
    def classes(self) -> tuple[str, ...]:
        return parse_classes(self.classes_edit.text())

    def _update_legend(self) -> None:
        try:
            names = self.classes()
        except ValueError as exc:
            self.classes_legend.setText(html.escape(str(exc)))
            return
        parts = []
        for i, (name, rgba) in enumerate(zip(names, class_colors(len(names)).values())):
            r, g, b = (int(255 * c) for c in rgba[:3])
            colour = f"<span style='color:rgb({r},{g},{b})'>&#9632;</span>"
            swatch = "&#9633;" if i == 0 else colour
            parts.append(f"{swatch} {i} {html.escape(name)}")
        self.classes_legend.setText("&nbsp; ".join(parts))

    def _classes_edited(self) -> None:
        try:
            names = self.classes()
        except ValueError as exc:
            notify_error(exc)
            self._update_legend()
            return
        self.classes_edit.setText(format_classes(names))
        self.settings.set("segment/classes", format_classes(names))
        self._update_legend()
        for layer in self.viewer.layers:
            if L.is_labels(layer) and L.role(layer) in (L.ANNOTATION, L.SEGMENTATION):
                L.set_classes(layer, names)

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

    def train_config(self) -> dict:
        """TrainConfig keyword arguments from the panel (plain values: no torch here)."""
        steps = self.steps_spin.value()
        return {
            "mode": self.mode,
            "classes": self.classes(),
            "probe_steps": steps,
            "ft_steps": steps,
            "crop": self.crop_spin.value(),
        }

    # ------------------------------------------------------------------ actions
    def new_annotation_layer(self) -> Any | None:
        """An empty labels layer for the chosen image, ready to paint."""
        image = self.current_image()
        if image is None:
            notify_error("Open a 3D or 4D image first.")
            return None
        try:
            classes = self.classes()
        except ValueError as exc:
            notify_error(exc)
            return None
        layer = L.add_labels_for(self.viewer, image, L.ANNOTATION, classes)
        layer.selected_label = len(classes) - 1 if len(classes) > 1 else 1
        layer.brush_size = 5
        layer.mode = "paint"
        self.viewer.layers.selection.active = layer
        self.refresh_layers()
        self.annotation_combo.setCurrentText(layer.name)
        self.refresh_summary()
        return layer

    def segment(self) -> bool:
        """Train on the annotated slices and segment the chosen image (in a worker)."""
        from ..jobs import segment_job

        if self.runner.running:
            return False
        try:
            image = self.current_image()
            if image is None:
                raise ValueError("Open a 3D or 4D image first.")
            cfg = self.train_config()
            pairs = self._annotation_pairs()
            if not pairs:
                raise AnnotationError(
                    "No annotated slice: press New annotation layer and paint at least one "
                    "slice first."
                )
            model = self.model_box.path
            if not model:
                from ..checkpoint import ModelFileError

                raise ModelFileError(
                    "No model chosen: pick a backbone file or pretrain one (Pretrain tab)."
                )
        except (ValueError, OSError) as exc:
            notify_error(exc)
            return False
        train = [
            (np.asarray(img.data), L.spacing(img), np.array(ann.data, copy=True))
            for img, ann in pairs
        ]
        names = [img.name for img, _ in pairs]
        self.refresh_summary()
        self._start(
            "train",
            image,
            segment_job,
            model,
            train,
            (np.asarray(image.data), L.spacing(image)),
            config=cfg,
            device=self.model_box.device,
            names=names,
            train=True,
            **self._job_inputs(image, pairs),
        )
        return True

    def predict_with_current(self) -> bool:
        """Segment the chosen image with the segmenter in memory (or a segmenter file)."""
        from ..jobs import segment_job

        if self.runner.running:
            return False
        image = self.current_image()
        if image is None:
            notify_error("Open a 3D or 4D image first.")
            return False
        model = self.segmenter if self.segmenter is not None else self.model_box.path
        if not model:
            notify_error("No segmenter yet: press Segment first.")
            return False
        pairs = self._annotation_pairs()  # no training: they only localise the heart
        self._start(
            "predict",
            image,
            segment_job,
            model,
            [(np.asarray(img.data), L.spacing(img), np.asarray(ann.data)) for img, ann in pairs],
            (np.asarray(image.data), L.spacing(image)),
            device=self.model_box.device,
            train=False,
            **self._job_inputs(image, pairs),
        )
        return True

    def _start(self, kind: str, image: Any, job: Any, *args: Any, **kwargs: Any) -> None:
        self._job_image, self._job_kind = image.name, kind
        # napari takes a few hundred ms to add a layer: do it now, at the click, rather
        # than freeze the window when the result arrives (removed again if none does)
        self._job_layer = None
        if L.linked_layer(self.viewer, image, L.SEGMENTATION) is None:
            self._job_layer = self._new_segmentation_layer(image)
        self.progress.setRange(0, 0)  # busy until the first step
        self.status.setText("Loading the model…")
        self.runner.start(job, *args, **kwargs)

    def _new_segmentation_layer(self, image: Any) -> Any:
        classes = self.classes() if self._classes_ok() else DEFAULT_CLASSES
        return L.add_labels_for(self.viewer, image, L.SEGMENTATION, classes)

    def _drop_unused_layer(self) -> None:
        """Remove the layer made for a job that gave no result (if still empty)."""
        layer, self._job_layer = self._job_layer, None
        if layer is None or np.any(layer.data):
            return
        for ly in list(self.viewer.layers):
            if L.same(ly, layer):
                self.viewer.layers.remove(ly)

    def cancel(self) -> None:
        if self.runner.stop():
            self.status.setText("Stopping after this step…")

    def use_corrections(self) -> int:
        """Copy the slices edited in the segmentation layer into the annotation layer."""
        image, seg = self.current_image(), self.segmentation_layer()
        if image is None or seg is None:
            notify_error("No segmentation yet: press Segment first.")
            return 0
        ref = self.last_prediction.get(L.unwrap(seg))
        if ref is None or ref.shape != seg.data.shape:
            notify_error(
                "The prediction of this segmentation layer is not known here, so edits "
                "cannot be told apart: press Segment first."
            )
            return 0
        positions = edited_slices(np.asarray(seg.data), ref)
        if not positions:
            notify_info("No corrected slice: edit the segmentation layer first.")
            return 0
        ann = self._own_annotation(image)
        if ann is None:
            ann = self.new_annotation_layer()
            if ann is None:
                return 0
        seg_data = np.asarray(seg.data)
        indices, values = slice_update(np.asarray(ann.data), seg_data, positions)
        L.write_indices_with_history(ann, indices, values)
        ann.metadata[BACKGROUND_KEY] = sorted(
            corrected_background(seg_data, positions, self.background(ann))
        )
        empty = [p for p in positions if not np.any(seg_data[p])]
        extra = f" ({format_positions(empty)} now empty: marked background only)" if empty else ""
        notify_info(
            f"Copied {len(positions)} corrected slice(s) ({format_positions(positions)}) "
            f"into '{ann.name}'{extra}; press Segment to learn from them."
        )
        self.refresh_summary()
        return len(positions)

    def suggest_next_slice(self) -> tuple[int, ...] | None:
        """Move to the unannotated slice with the highest mean uncertainty in the heart."""
        seg = self.segmentation_layer()
        u = self.last_uncertainty.get(L.unwrap(seg)) if seg is not None else None
        ref = self.last_prediction.get(L.unwrap(seg)) if seg is not None else None
        if u is None or ref is None:
            notify_error("No prediction yet: press Segment first.")
            return None
        ann = self._own_annotation(self.current_image())
        exclude = (
            annotation_summary(np.asarray(ann.data), self.background(ann))[0]
            if ann is not None
            else []
        )
        found = suggest_slice(u, ref, exclude)
        if found is None:
            notify_info("No slice to suggest: every slice with a predicted heart is annotated.")
            return None
        position, score = found
        lead = seg.ndim - 2
        offset = self.viewer.dims.ndim - seg.ndim
        for axis, index in enumerate(position[:lead]):
            world = float(seg.translate[axis] + index * seg.scale[axis])
            self.viewer.dims.set_point(offset + axis, world)
        where = (
            f"slice {position[-1]} of frame {position[0]}" if lead == 2 else f"slice {position[0]}"
        )
        notify_info(f"Suggested {where}: mean uncertainty {score:.2f} in the predicted heart.")
        return position

    def export_segmentation(self, path: str | None = None) -> str | None:
        """Save the segmentation layer as NIfTI with the image's header (the plugin writer)."""
        from .._writer import write_labels

        seg = self.segmentation_layer()
        if seg is None:
            notify_error("No segmentation to export: press Segment first.")
            return None
        if path is None:
            path = self._ask_save_path(
                "Export segmentation",
                f"{self.current_image().name}_seg.nii.gz",
                "NIfTI (*.nii.gz *.nii)",
            )
            if not path:
                return None
        try:
            (written,) = write_labels(
                path, np.asarray(seg.data), {"metadata": seg.metadata, "scale": seg.scale}
            )
        except (ValueError, OSError) as exc:
            notify_error(exc)
            return None
        notify_info(f"Saved {Path(written).name} with the image's NIfTI header.")
        return written

    def save_segmenter(self, path: str | None = None) -> str | None:
        if self.segmenter is None:
            notify_error("No segmenter trained yet: press Segment first.")
            return None
        if path is None:
            name = f"{self.segmenter_source or 'pix2rep'}_segmenter.pt"
            path = self._ask_save_path("Save segmenter", name, "PyTorch model (*.pt)")
            if not path:
                return None
        try:
            saved = self.segmenter.save(path)
        except (ValueError, OSError, RuntimeError) as exc:
            notify_error(exc)
            return None
        notify_info(f"Saved the segmenter to {Path(saved).name}.")
        return str(saved)

    def _ask_save_path(self, title: str, name: str, filt: str) -> str:
        folder = self.settings.get("segment/export_dir", "")
        image = self.current_image()
        if not folder and image is not None:
            src = (image.metadata.get(METADATA_KEY) or {}).get("source_path")
            folder = str(Path(src).parent) if src else ""
        start = str(Path(folder or Path.home()) / name)
        path, _ = QFileDialog.getSaveFileName(self, title, start, filt)
        if path:
            self.settings.set("segment/export_dir", str(Path(path).parent))
        return path

    # ------------------------------------------------------------------ worker results
    def _on_running(self, running: bool) -> None:
        self.cancel_button.setEnabled(running)
        self._update_buttons()
        if not running:
            self.progress.setRange(0, 1)
            self.progress.setValue(0 if self.runner.stop_requested else 1)

    def _update_buttons(self) -> None:
        busy = self.runner.running
        has_image = self.current_image() is not None
        for b in (self.segment_button, self.predict_button, self.new_annotation_button):
            b.setEnabled(has_image and not busy)

    def _on_progress(self, p: Any, _losses: Any) -> None:
        total = max(1, int(p.total))
        self.progress.setRange(0, total)
        self.progress.setValue(min(int(p.step), total))
        text = f"{STAGE_NAMES.get(p.stage, p.stage)} {p.step}/{p.total}"
        if p.loss is not None:
            text += f" · loss {p.loss:.3f}"
        if p.message:
            text += f" · {p.message}"
        self.status.setText(text)

    def _on_failed(self, message: str) -> None:
        self._drop_unused_layer()
        self.status.setText(message)
        notify_error(message)

    def _on_done(self, result: Any) -> None:
        if result.cancelled or result.prediction is None:
            self._drop_unused_layer()
            self.status.setText("Cancelled: no layer was changed.")
            notify_info("Segmentation cancelled; no layer was changed.")
            return
        if result.trained:
            self.segmenter = result.segmenter
            self.segmenter_source = self._job_image or ""
        image = L.find_layer(self.viewer, self._job_image)
        if image is None:
            self._drop_unused_layer()
            notify_error(f"The image '{self._job_image}' was closed; the result was dropped.")
            return
        self.apply_prediction(image, result.prediction, result.uncertainty)
        how = "current segmenter"
        if self._job_kind == "train":
            linear = result.segmenter.meta.get("mode", self.mode) == "linear"
            how = "linear probe" if linear else "fine-tuned"
        self.status.setText(
            f"Done in {fmt_seconds(result.seconds)} ({how}). Ctrl+Z on the segmentation "
            "layer undoes it."
        )
        notify_info(
            f"Segmented '{image.name}' ({how}, {result.seconds:.1f} s); correct the "
            "segmentation layer, then Use corrections and Segment again."
        )

    def apply_prediction(
        self, image: Any, prediction: Any, uncertainty: np.ndarray | None = None
    ) -> Any:
        """Write a prediction into the image's segmentation layer as one undoable edit."""
        self._job_layer = None
        seg = L.linked_layer(self.viewer, image, L.SEGMENTATION)
        if seg is None:
            seg = self._new_segmentation_layer(image)
        ref = self.last_prediction.get(L.unwrap(seg))
        if ref is not None and ref.shape == seg.data.shape:
            unused = edited_slices(np.asarray(seg.data), ref)
            ann = (
                self.current_annotation()
                if L.same(image, self.current_image())
                else L.linked_layer(self.viewer, image, L.ANNOTATION)
            )
            if ann is not None:
                unused = [p for p in unused if not np.array_equal(ann.data[p], seg.data[p])]
            if unused:
                notify_info(
                    f"The corrections on {format_positions(unused)} were replaced (they had "
                    "not been used); Ctrl+Z on the segmentation layer brings them back."
                )
        labels = np.asarray(prediction.labels)
        L.write_with_history(seg, labels)
        self.last_prediction[L.unwrap(seg)] = labels.copy()
        if uncertainty is None:
            uncertainty = prediction.uncertainty().astype(np.float16)
        self.last_uncertainty[L.unwrap(seg)] = uncertainty
        if self.uncertainty_check.isChecked():
            shown = L.add_uncertainty_for(self.viewer, image, uncertainty.astype(np.float32))
            shown.visible = True
        self.refresh_layers()
        return seg

    def _classes_ok(self) -> bool:
        try:
            self.classes()
            return True
        except ValueError:
            return False
