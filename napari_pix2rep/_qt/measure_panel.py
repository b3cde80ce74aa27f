"""Measures tab: LV/RV volumes, EF and myocardial mass from a segmentation, the volume
curve as a plot, CSV + PNG export and a one-page HTML report.

Library calls: ``measures_report.measures_table`` (``metrics.cine_measures`` /
``volume_curve`` for a 4D layer, ``metrics.cardiac_measures`` for an ED and an ES 3D
layer, ``metrics.structure_volumes`` for one 3D layer); ``volume_curve.cine_curve`` /
``pair_curve`` for the plot (``_qt/volume_plot.py``), ``volume_curve.write_csv`` /
``write_png`` / ``write_report`` for the files (``measures_report.write_csv`` for one
3D volume, which has no curve); the layers offered and pre-selected come from
``measure_layers`` (segmentations first, the ED/ES pair by name or frame, annotation
layers never pre-selected and never for ES). The dock hands in the model's provenance
for the report (a callable giving ``(label, text)`` rows).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_pix2rep._qt import layers as L
from napari_pix2rep._qt.common import Links, compact_combo, notify_error, notify_info
from napari_pix2rep._qt.settings import Settings
from napari_pix2rep._qt.volume_plot import VolumePlot
from napari_pix2rep.io.layer_meta import source_path
from napari_pix2rep.measure.measure_layers import (
    LabelsInfo,
    choose_measure_layers,
    ed_candidates,
    es_candidates,
)
from napari_pix2rep.measure.report import CURVE_COLUMNS, MeasuresTable, measures_table, write_csv
from napari_pix2rep.measure.volume_curve import (
    VolumeCurve,
    cine_curve,
    pair_curve,
    write_png,
    write_report,
)
from napari_pix2rep.measure.volume_curve import write_csv as write_curve_csv

NO_ES = "— none —"


class MeasurePanel(QWidget):
    """Clinical numbers of a segmentation layer (labels 1 RV, 2 MYO, 3 LV)."""

    def __init__(
        self,
        viewer: Any,
        settings: Settings,
        links: Links,
        provenance: Callable[[], list[tuple[str, str]]] = list,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.settings = settings
        self.provenance = provenance
        self.table_data: MeasuresTable | None = None
        self.curve_data: VolumeCurve | None = None
        self.measured = ""  # the layers measured, in words, for the report
        self.chosen_by_user = False  # the user picked the layers: keep them when present
        self.choice_reason = ""

        outer = QVBoxLayout(self)
        outer.setContentsMargins(4, 4, 4, 4)
        outer.addLayout(self._choices())
        outer.addLayout(self._buttons())
        self._tables(outer)
        self.compute_button.clicked.connect(lambda: self.compute())
        self.csv_button.clicked.connect(lambda: self.export_csv())
        self.report_button.clicked.connect(lambda: self.export_report())
        self.layer_combo.currentTextChanged.connect(self._layer_changed)
        self.layer_combo.activated.connect(self._picked)
        self.es_combo.activated.connect(self._picked)
        links.connect(viewer.layers.events.inserted, self.refresh_layers)
        links.connect(viewer.layers.events.removed, self.refresh_layers)
        self.refresh_layers()

    # ------------------------------------------------------------------ building
    def _choices(self) -> QFormLayout:
        """The ED (or cine) and ES layers, and a cine's ED / ES frames."""
        form = QFormLayout()
        self.layer_combo = compact_combo(QComboBox())
        self.layer_combo.setToolTip("A 4D (cine) segmentation, or the end-diastolic 3D one")
        self.es_combo = compact_combo(QComboBox())
        self.es_combo.setToolTip(
            "The end-systolic 3D segmentation (same grid) for EF and mass; none: volumes only"
        )
        form.addRow("ED or cine", self.layer_combo)
        form.addRow("ES (3D)", self.es_combo)
        # a cine's ED / ES frames: "auto" = largest / smallest LV volume
        self.ed_frame = self._frame_box("ED frame of the cine (auto: largest LV volume)")
        self.es_frame = self._frame_box("ES frame of the cine (auto: smallest LV volume)")
        frames = QHBoxLayout()
        frames.addWidget(self.ed_frame)
        frames.addWidget(QLabel("ES"))
        frames.addWidget(self.es_frame)
        form.addRow("Cine ED", frames)
        return form

    def _buttons(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.compute_button = QPushButton("Compute")
        self.csv_button = QPushButton("Export…")
        self.csv_button.setToolTip("The measures and volume curve as CSV, the curve as PNG")
        self.report_button = QPushButton("Report…")
        self.report_button.setToolTip(
            "One HTML page: the measures, the curve, the frames segmented and the model"
        )
        row.addWidget(self.compute_button)
        row.addWidget(self.csv_button)
        row.addWidget(self.report_button)
        return row

    def _tables(self, outer: QVBoxLayout) -> None:
        """The measures table, the volume curve (plot and table) and the note, into ``outer``."""
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["Measure", "Value", "Unit"])
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeToContents)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.setMinimumHeight(8 * 22 + 6)
        self.curve = QTableWidget(0, 4)
        self.curve.setHorizontalHeaderLabels(
            ["Frame", *(c.replace("_ml", " mL") for c in CURVE_COLUMNS)]
        )
        self.curve.verticalHeader().setVisible(False)
        self.curve.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.curve.setEditTriggers(QTableWidget.NoEditTriggers)
        self.curve.verticalHeader().setDefaultSectionSize(22)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.plot = VolumePlot()
        outer.addWidget(self.table, 2)
        outer.addWidget(QLabel("Volume curve (4D)"))
        outer.addWidget(self.plot, 3)
        outer.addWidget(self.curve, 3)
        outer.addWidget(self.note)

    @staticmethod
    def _frame_box(tip: str) -> QSpinBox:
        box = QSpinBox()
        box.setMinimum(-1)
        box.setSpecialValueText("auto")
        box.setValue(-1)
        box.setToolTip(tip)
        return box

    def _infos(self) -> list[LabelsInfo]:
        return [
            LabelsInfo(ly.name, tuple(ly.data.shape), L.role(ly), L.linked_image(self.viewer, ly))
            for ly in L.labels_layers(self.viewer)
        ]

    def refresh_layers(self, *_: Any) -> None:
        """Refill the choices; pre-select the best ED (/ES) unless the user chose."""
        infos = self._infos()
        names = [i.name for i in ed_candidates(infos)]
        current, current_es = self.layer_combo.currentText(), self.es_combo.currentText()
        keep = self.chosen_by_user and current in names
        self.layer_combo.blockSignals(True)
        self.layer_combo.clear()
        self.layer_combo.addItems(names)
        if keep:
            self.layer_combo.setCurrentText(current)
            self._layer_changed()
            if self.es_combo.findText(current_es) >= 0:
                self.es_combo.setCurrentText(current_es)
        else:
            self.chosen_by_user = False
            choice = choose_measure_layers(infos)
            self.choice_reason = choice.reason
            self.layer_combo.setCurrentIndex(names.index(choice.ed) if choice.ed else -1)
            self._layer_changed()
            self.es_combo.setCurrentText(choice.es or NO_ES)
        self.layer_combo.blockSignals(False)

    def _picked(self, *_: Any) -> None:
        self.chosen_by_user = True
        self.choice_reason = "chosen here"

    def _layer_changed(self, *_: Any) -> None:
        infos = self._infos()
        ed = next((i for i in infos if i.name == self.layer_combo.currentText()), None)
        current = self.es_combo.currentText()
        self.es_combo.clear()
        self.es_combo.addItem(NO_ES)
        self.es_combo.addItems([i.name for i in es_candidates(infos, ed)])
        if self.es_combo.findText(current) >= 0:
            self.es_combo.setCurrentText(current)
        self.es_combo.setEnabled(ed is not None and len(ed.shape) == 3)
        cine = ed is not None and len(ed.shape) == 4
        for box in (self.ed_frame, self.es_frame):
            box.setEnabled(cine)
            box.setMaximum(ed.shape[0] - 1 if cine else -1)

    def set_layers(self, ed: str, es: str | None = None) -> None:
        """Measure these layers (kept while they are open), as if picked by hand."""
        self.layer_combo.setCurrentText(ed)
        self._layer_changed()
        self.es_combo.setCurrentText(es or NO_ES)
        self._picked()

    def compute(self) -> MeasuresTable | None:
        layer = L.find_layer(self.viewer, self.layer_combo.currentText())
        if layer is None or not L.is_labels(layer):
            notify_error("Choose a segmentation (labels) layer first.")
            return None
        es_layer = None
        if layer.ndim == 3 and self.es_combo.currentText() != NO_ES:
            es_layer = L.find_layer(self.viewer, self.es_combo.currentText())
        try:
            frames = [
                b.value() if b.value() >= 0 else None for b in (self.ed_frame, self.es_frame)
            ]
            data, spacing = np.asarray(layer.data), L.spacing(layer)
            es_data = np.asarray(es_layer.data) if es_layer is not None else None
            ed, es = (frames[0], frames[1]) if layer.ndim == 4 else (None, None)
            table = measures_table(data, spacing, es_data, ed=ed, es=es)
            if layer.ndim == 4:
                curve = cine_curve(data, spacing, ed=ed, es=es)
            else:
                curve = pair_curve(data, es_data, spacing) if es_data is not None else None
        except ValueError as exc:
            notify_error(exc)
            return None
        self.table_data, self.curve_data = table, curve
        self.plot.show_curve(curve)
        used = f"ED {layer.name}, ES {es_layer.name}" if es_layer is not None else layer.name
        self.measured = self._origin(layer, es_layer)
        used = f"Measured {used} ({self.choice_reason})."
        if L.role(layer) == L.ANNOTATION:
            used += " It is an annotation layer: only its painted slices count."
        self._show(table, used)
        return table

    def _show(self, table: MeasuresTable, used: str) -> None:
        self.table.setRowCount(len(table.summary))
        for r, (name, value, unit) in enumerate(table.summary):
            for c, text in enumerate((name, f"{value:.1f}", unit)):
                self.table.setItem(r, c, QTableWidgetItem(text))
        self.curve.setRowCount(len(table.curve))
        for r, row in enumerate(table.curve):
            values = (
                f"{int(row['frame'])}",
                *(f"{row[k]:.1f}" for k in CURVE_COLUMNS),
            )
            for c, text in enumerate(values):
                self.curve.setItem(r, c, QTableWidgetItem(text))
        self.note.setText(f"{used} {table.note}".strip())

    def value(self, name: str) -> float | None:
        """A shown measure by name (e.g. "LV EF"), for scripts and tests."""
        if self.table_data is None:
            return None
        for n, v, _ in self.table_data.summary:
            if n == name:
                return v
        return None

    def _origin(self, layer: Any, es_layer: Any | None) -> str:
        """Where the measured layers come from, in words (for the report)."""
        out = []
        for what, ly in (("", layer), ("ES: ", es_layer)):
            if ly is None:
                continue
            src, image = source_path(ly.metadata), L.linked_image(self.viewer, ly)
            if L.role(ly) == L.SEGMENTATION:
                text = f"{ly.name}: segmented in the dock from the image {image}"
            elif L.role(ly) == L.ANNOTATION:
                text = f"{ly.name}: the annotation layer of {image} (painted slices only)"
            else:
                text = f"{ly.name}: a labels layer"
            out.append(what + text + (f" ({src})" if src else ""))
        return "; ".join(out)

    def _ask_path(self, title: str, suffix: str, filt: str) -> str | None:
        start = Path(self.settings.get("measures/dir", str(Path.home())))
        name = f"{self.layer_combo.currentText() or 'measures'}{suffix}"
        path, _ = QFileDialog.getSaveFileName(self, title, str(start / name), filt)
        if not path:
            return None
        self.settings.set("measures/dir", str(Path(path).parent))
        return path

    def export_csv(self, path: str | None = None) -> str | None:
        """*Export*: the measures and volume curve as CSV at ``path`` and, when there is a
        curve, its picture beside it (``<name>.png``); returns the CSV written."""
        table = self.table_data or self.compute()
        if table is None:
            return None
        path = path or self._ask_path("Export measures", "_measures.csv", "CSV (*.csv)")
        if path is None:
            return None
        curve = self.curve_data
        try:
            if curve is None:
                written = write_csv(path, table)
            else:
                written = write_curve_csv(path, curve, table.summary)
                png = write_png(Path(written).with_suffix(".png"), curve)
        except (OSError, ValueError) as exc:
            notify_error(exc)
            return None
        also = f" and the curve to {png.name}" if curve is not None else ""
        notify_info(f"Saved the measures to {Path(written).name}{also}.")
        return str(written)

    def export_report(self, path: str | None = None) -> str | None:
        """*Report*: one HTML page (measures, curve, frames segmented, model) at ``path``."""
        table = self.table_data or self.compute()
        if table is None:
            return None
        curve = self.curve_data
        if curve is None:
            notify_error("The report needs a cine segmentation, or an ED and an ES layer.")
            return None
        path = path or self._ask_path("Save the report", "_report.html", "HTML (*.html)")
        if path is None:
            return None
        model = [("Measured", self.measured), *self.provenance()]
        title = f"Cardiac measures: {self.layer_combo.currentText()}"
        try:
            written = write_report(
                path, curve, table.summary, title=title, model=model, note=table.note
            )
        except (OSError, ValueError) as exc:
            notify_error(exc)
            return None
        notify_info(f"Saved the report to {Path(written).name}.")
        return str(written)
