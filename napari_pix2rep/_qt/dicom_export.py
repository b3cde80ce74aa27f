"""The Segment tab's *Export DICOM SEG…*: the segmentation layer of an image that was read
from a DICOM series, written as DICOM SEG files (:func:`~napari_pix2rep.io.dicom_seg.
write_dicom_seg`, one per segmented cardiac phase) into a folder, in a worker thread (the
series is read again, ~1 s for a 20-phase cine). Enabled only for images from DICOM; the
result and what was normalised in the source headers come as notifications.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtWidgets import QFileDialog, QPushButton

from napari_pix2rep._qt.common import notify_error, notify_info
from napari_pix2rep.io.datafiles import is_nifti_path
from napari_pix2rep.io.images import is_dicom_source
from napari_pix2rep.io.layer_meta import ROLE_KEY, source_path, volume_from_layer
from napari_pix2rep.segment.session import SessionError


def dicom_series_of(image: Any) -> str | None:
    """The DICOM series (folder or file) an image layer was read from, else None."""
    src = source_path(image.metadata) if image is not None else None
    if not src or is_nifti_path(src) or not Path(src).exists():
        return None
    return src if is_dicom_source(src) else None


class DicomSegExport:
    """The *Export DICOM SEG…* button of a :class:`~.segment_panel.SegmentPanel`, placed
    beside its *Export NIfTI…* button."""

    def __init__(self, panel: Any) -> None:
        self.panel = panel
        self.worker: Any = None  # the export running, if any
        self.button = QPushButton("Export DICOM SEG…")
        self.button.setToolTip(
            "Save the segmentation as DICOM SEG files (one per segmented phase) that "
            "refer to the source series, for PACS and DICOM viewers"
        )
        self.button.clicked.connect(lambda *_: self.export())
        grid = panel.export_button.parentWidget().layout()
        row, col, _, _ = grid.getItemPosition(grid.indexOf(panel.export_button))
        grid.removeWidget(panel.export_button)
        grid.addWidget(panel.export_button, row, col, 1, 1)
        grid.addWidget(self.button, row, col + 1, 1, 1)
        self.refresh()

    def refresh(self) -> None:
        """Enabled when the chosen image came from DICOM and no export is running."""
        ready = self.worker is None and dicom_series_of(self.panel.current_image()) is not None
        self.button.setEnabled(ready)

    def _model_name(self) -> str | None:
        session, path = self.panel.session, self.panel.model_box.path
        name = Path(path).name if path else None
        if session.segmenter is not None and session.segmenter_source:
            return f"{name or 'pix2rep'} trained on '{session.segmenter_source}'"
        return name

    def _edited(self, seg: Any) -> bool:
        """True when the user's painting shaped the layer: a segmenter trained on it in
        this session, corrections, or a layer whose prediction is not known here."""
        if self.panel.session.segmenter is not None:
            return True
        try:
            return bool(self.panel.session.corrected_slices(seg))
        except SessionError:
            return True

    def export(self, out_dir: str | None = None) -> bool:
        """Start writing the segmentation as DICOM SEG into ``out_dir`` (asked when None);
        False when nothing was started (an error notification says why)."""
        from napari.qt.threading import create_worker

        from napari_pix2rep.io.dicom_seg import write_dicom_seg

        image, seg = self.panel.current_image(), self.panel.segmentation_layer()
        series = dicom_series_of(image)
        if series is None:
            notify_error("The image was not read from a DICOM series, so it has no DICOM SEG.")
            return False
        if seg is None:
            notify_error("No segmentation to export: press Segment first.")
            return False
        if self.worker is not None:
            return False
        if not out_dir:
            start = self.panel.settings.get("segment/export_dir", "") or str(Path(series).parent)
            out_dir = QFileDialog.getExistingDirectory(
                self.panel, "Export DICOM SEG into folder", start
            )
            if not out_dir:
                return False
            self.panel.settings.set("segment/export_dir", out_dir)
        try:
            mask = volume_from_layer(np.array(seg.data, copy=True), seg.metadata)
            classes = (seg.metadata.get(ROLE_KEY) or {}).get("classes")
            classes = tuple(classes) if classes else self.panel.classes_or_default()
        except (ValueError, OSError) as exc:
            notify_error(exc)
            return False
        worker = create_worker(
            write_dicom_seg,
            mask,
            series,
            out_dir,
            classes=classes,
            model=self._model_name(),
            edited=self._edited(seg),
            _start_thread=False,
            _ignore_errors=True,  # reported by errored, not raised in the GUI thread
        )
        worker.returned.connect(self._done)
        worker.errored.connect(notify_error)
        worker.finished.connect(self._finished)
        self.worker = worker
        self.refresh()
        worker.start()
        return True

    def _done(self, result: Any) -> None:
        n = len(result.paths)
        phases = ", ".join(map(str, result.frames))
        where = Path(result.paths[0]).parent
        notes = f" Normalised: {' '.join(result.notes)}" if result.notes else ""
        notify_info(
            f"Wrote {n} DICOM SEG file{'s' if n > 1 else ''} to {where} "
            f"(phase{'s' if n > 1 else ''} {phases}).{notes}"
        )

    def _finished(self) -> None:
        self.worker = None
        self.refresh()
