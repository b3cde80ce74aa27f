"""Segment tab: a thin view of :class:`~napari_pix2rep.segment.session.SegmentationSession`.

The session holds the loop (training pairs, the Segment recipe's inputs, the last
prediction per layer, corrections, the suggested slice); :class:`SegmentForm` holds the
widgets. This panel connects them to the viewer: which layers are open and chosen, the
worker (``runner.JobRunner`` running ``jobs.segment_job``), history-recording writes
(``layers.write_with_history``), notifications, file dialogs, the NIfTI export
(``_writer.write_labels``) and the viewer's dims for "Suggest next slice".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QWidget

from napari_pix2rep._qt import layers as L
from napari_pix2rep._qt.common import Links, notify_error, notify_info, refill_combo
from napari_pix2rep._qt.dicom_export import DicomSegExport
from napari_pix2rep._qt.model_box import ModelBox
from napari_pix2rep._qt.runner import JobRunner
from napari_pix2rep._qt.segment_form import SegmentForm, summary_html
from napari_pix2rep._qt.settings import Settings
from napari_pix2rep.annotate.edits import format_positions
from napari_pix2rep.core.progress import format_duration
from napari_pix2rep.io.layer_meta import find_image, image_id, source_path
from napari_pix2rep.segment.session import (
    PREDICT,
    TRAIN,
    SegmentationSession,
    SessionError,
    describe_annotation,
)
from napari_pix2rep.segment.settings import SegmentSettings


class SegmentPanel(SegmentForm):
    """Annotate a few slices, segment every slice and frame, correct, repeat, export."""

    def __init__(
        self,
        viewer: Any,
        model_box: ModelBox,
        settings: Settings,
        links: Links,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(settings, parent)
        self.viewer = viewer
        self.model_box = model_box
        self.links = links
        self.runner = JobRunner("segmentation")
        self.session = SegmentationSession(L.write_with_history, L.write_indices_with_history)
        self.session.prediction_applied.connect(self._on_prediction_applied)
        self.session.corrections_used.connect(lambda *_: self.refresh_summary())
        self._job_layer: Any = None  # the segmentation layer made for the running job

        self.image_combo.currentTextChanged.connect(self._image_changed)
        self.annotation_combo.currentTextChanged.connect(self.schedule_summary)
        self.classes_edit.editingFinished.connect(self._classes_edited)
        for button, action in (
            (self.new_annotation_button, self.new_annotation_layer),
            (self.segment_button, self.segment),
            (self.cancel_button, self.cancel),
            (self.corrections_button, self.use_corrections),
            (self.suggest_button, self.suggest_next_slice),
            (self.predict_button, self.predict_with_current),
            (self.save_model_button, self.save_segmenter),
            (self.export_button, self.export_segmentation),
        ):
            button.clicked.connect(lambda *_, act=action: act())
        self.dicom_export = DicomSegExport(self)  # beside Export NIfTI…, for DICOM images
        self.runner.progress.connect(lambda p, _losses: self.show_progress(p))
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
        self.refresh_layers()

    @property
    def segmenter(self) -> Any:
        """The last trained segmenter (None: none yet)."""
        return self.session.segmenter

    # ------------------------------------------------------------------ layer lists
    def _watch(self, layer: Any) -> None:
        self.links.connect(layer.events.name, self._on_layers_changed)
        if L.is_labels(layer):
            self.links.connect(layer.events.paint, self.schedule_summary)
            self.links.connect(layer.events.data, self.schedule_summary)

    def _on_layers_changed(self, event: Any = None) -> None:
        if event is not None and getattr(event, "type", "") == "inserted":
            self._watch(event.value)
        self.refresh_layers()

    def refresh_layers(self) -> None:
        """Refill the image and annotation choices (keeping the current ones)."""
        refill_combo(self.image_combo, [ly.name for ly in L.image_layers(self.viewer)])
        self._image_changed()

    def _image_changed(self, *_: Any) -> None:
        image = self.current_image()
        names = [ly.name for ly in L.annotation_candidates(self.viewer, image)] if image else []
        refill_combo(self.annotation_combo, names)
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

    def _layers(self) -> tuple[list[Any], list[Any]]:
        """The open image layers and labels layers."""
        layers = list(self.viewer.layers)
        return [ly for ly in layers if L.is_image(ly)], [ly for ly in layers if L.is_labels(ly)]

    def _annotation_pairs(self) -> list[tuple[Any, Any]]:
        """(image, annotation layer) pairs that training would use, chosen pair first."""
        images, labels = self._layers()
        return self.session.training_pairs(
            self.current_image(),
            self.current_annotation(),
            images,
            labels,
            self.all_images_check.isChecked(),
        )

    def _own_annotation(self, image: Any) -> Any | None:
        images, _ = self._layers()
        chosen = self.current_annotation()
        return self.session.own_annotation(image, chosen, images, list(self.viewer.layers))

    # ------------------------------------------------------------------ summary, classes
    def schedule_summary(self, *_: Any) -> None:
        self._summary_timer.start()

    def refresh_summary(self) -> str:
        """Show which layers are annotated and on which slices (per frame for 4D)."""
        self._summary_timer.stop()
        pairs = [
            (img.name, ann.name, describe_annotation(ann)) for img, ann in self._annotation_pairs()
        ]
        self.summary.setText(summary_html(pairs, self.current_image() is not None))
        return self.summary.text()

    def _classes_edited(self) -> None:
        names = self.take_classes()
        for layer in self.viewer.layers if names else ():
            if L.is_labels(layer) and L.role(layer) in (L.ANNOTATION, L.SEGMENTATION):
                L.set_classes(layer, names)

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
        layer = L.add_annotation_layer(self.viewer, image, classes)
        self.refresh_layers()
        self.annotation_combo.setCurrentText(layer.name)
        self.refresh_summary()
        return layer

    def segment(self) -> bool:
        """Train on the annotated slices and segment the chosen image (in a worker)."""
        if self.runner.running:
            return False
        try:
            image = self.current_image()
            settings = self.segment_settings() if image is not None else None
            pairs = self._annotation_pairs()
            self.session.check_segment(image, self.model_box.path)
        except (ValueError, OSError) as exc:
            notify_error(exc)
            return False
        self.refresh_summary()
        self._start(TRAIN, image, self.model_box.path, pairs, settings)
        return True

    def predict_with_current(self) -> bool:
        """Segment the chosen image with the segmenter in memory (or a segmenter file)."""
        if self.runner.running:
            return False
        image = self.current_image()
        if image is None:
            notify_error("Open a 3D or 4D image first.")
            return False
        try:
            model = self.session.predict_model(self.model_box.path)
        except SessionError as exc:
            notify_error(exc)
            return False
        # no training: the annotations only localise the heart
        self._start(PREDICT, image, model, self._annotation_pairs(), self.segment_settings(False))
        return True

    def _start(
        self, kind: str, image: Any, model: Any, pairs: list, settings: SegmentSettings
    ) -> None:
        from napari_pix2rep.jobs import segment_job

        args, kwargs = self.session.segment_inputs(
            model, image, pairs, settings=settings, device=self.model_box.device
        )
        self.session.start_job(kind, image.name, image_id(image.metadata))
        # napari takes a few hundred ms to add a layer: do it now, at the click, rather
        # than freeze the window when the result arrives (removed again if none does)
        self._job_layer = None
        if L.linked_layer(self.viewer, image, L.SEGMENTATION) is None:
            self._job_layer = self._new_segmentation_layer(image)
        # an empty bar until the first step, not Qt's busy indicator: its animation
        # repaints the whole window 30 times a second (~18 ms each, software OpenGL)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status.setText("Loading the model…")
        self.runner.start(segment_job, *args, **kwargs)

    def _new_segmentation_layer(self, image: Any) -> Any:
        return L.add_labels_for(self.viewer, image, L.SEGMENTATION, self.classes_or_default())

    def _drop_unused_layer(self) -> None:
        """Remove the layer made for a job that gave no result (if still empty)."""
        layer, self._job_layer = self._job_layer, None
        L.remove_if_empty(self.viewer, layer)

    def cancel(self) -> None:
        if self.runner.stop():
            self.status.setText("Stopping after this step…")

    def use_corrections(self) -> int:
        """Copy the slices edited in the segmentation layer into the annotation layer."""
        image, seg = self.current_image(), self.segmentation_layer()
        if image is None or seg is None:
            notify_error("No segmentation yet: press Segment first.")
            return 0
        try:
            positions = self.session.corrected_slices(seg)
        except SessionError as exc:
            notify_error(exc)
            return 0
        if not positions:
            notify_info("No corrected slice: edit the segmentation layer first.")
            return 0
        ann = self._own_annotation(image)
        if ann is None:
            ann = self.new_annotation_layer()
            if ann is None:
                return 0
        done = self.session.use_corrections(seg, ann, positions)
        notify_info(done.message(ann.name))
        return len(positions)

    def suggest_next_slice(self) -> tuple[int, ...] | None:
        """Move to the unannotated slice with the highest mean uncertainty in the heart."""
        seg = self.segmentation_layer()
        try:
            found = self.session.suggest_next(seg, self._own_annotation(self.current_image()))
        except SessionError as exc:
            notify_error(exc)
            return None
        if found is None:
            notify_info("No slice to suggest: every slice with a predicted heart is annotated.")
            return None
        for axis, world in found.dims_points(self.viewer.dims.ndim, seg.ndim):
            self.viewer.dims.set_point(axis, world)
        notify_info(found.message())
        return found.position

    def export_segmentation(self, path: str | None = None) -> str | None:
        """Save the segmentation layer as NIfTI with the image's header (the plugin writer)."""
        seg = self.segmentation_layer()
        if seg is None:
            notify_error("No segmentation to export: press Segment first.")
            return None
        name = f"{self.current_image().name}_seg.nii.gz"
        path = path or self._ask_save_path("Export segmentation", name, "NIfTI (*.nii.gz *.nii)")
        if not path:
            return None
        try:
            written = L.export_labels(seg, path)
        except (ValueError, OSError) as exc:
            notify_error(exc)
            return None
        notify_info(f"Saved {Path(written).name} with the image's NIfTI header.")
        return written

    def save_segmenter(self, path: str | None = None) -> str | None:
        if self.segmenter is None:
            notify_error("No segmenter trained yet: press Segment first.")
            return None
        name = self.session.segmenter_file_name()
        path = path or self._ask_save_path("Save segmenter", name, "PyTorch model (*.pt)")
        if not path:
            return None
        try:
            saved = self.session.save_segmenter(path)
        except (ValueError, OSError, RuntimeError) as exc:
            notify_error(exc)
            return None
        notify_info(f"Saved the segmenter to {Path(saved).name}.")
        return saved

    def _ask_save_path(self, title: str, name: str, filt: str) -> str:
        image = self.current_image()
        src = source_path(image.metadata) if image is not None else None
        return self.ask_save_path(title, name, filt, str(Path(src).parent) if src else "")

    # ------------------------------------------------------------------ worker results
    def _on_running(self, running: bool) -> None:
        self.show_running(running, self.runner.stop_requested)
        self._update_buttons()

    def _update_buttons(self) -> None:
        ready = self.current_image() is not None and not self.runner.running
        for b in (self.segment_button, self.predict_button, self.new_annotation_button):
            b.setEnabled(ready)
        self.dicom_export.refresh()

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
        job = self.session.job
        job_image = job.image if job else None
        how = self.session.finish_job(result)
        image = find_image(self.viewer.layers, job_image, job.image_id if job else None)
        if image is None:
            self._drop_unused_layer()
            notify_error(f"The image '{job_image}' was closed; the result was dropped.")
            return
        self.apply_prediction(image, result.prediction, result.uncertainty)
        self.status.setText(
            f"Done in {format_duration(result.seconds)} ({how}). Ctrl+Z on the segmentation "
            "layer undoes it."
        )
        what = result.report.images[0].line(how) if result.report else how
        notify_info(
            f"Segmented '{image.name}' ({what}; {result.seconds:.1f} s); correct the "
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
        ann = (
            self.current_annotation()
            if L.same(image, self.current_image())
            else L.linked_layer(self.viewer, image, L.ANNOTATION)
        )
        if uncertainty is None:
            uncertainty = prediction.uncertainty().astype(np.float16)
        self.session.apply_prediction(seg, prediction.labels, uncertainty, ann)
        if self.uncertainty_check.isChecked():
            shown = L.add_uncertainty_for(self.viewer, image, uncertainty.astype(np.float32))
            shown.visible = True
        self.refresh_layers()
        return seg

    def _on_prediction_applied(self, _layer: Any, unused: list) -> None:
        if unused:
            notify_info(
                f"The corrections on {format_positions(unused)} were replaced (they had "
                "not been used); Ctrl+Z on the segmentation layer brings them back."
            )
