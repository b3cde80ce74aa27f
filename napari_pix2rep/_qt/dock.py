"""The Pix2Rep dock: model choice on top, then Segment, Measures and Pretrain tabs.

A thin Qt shell over the library (see each panel's docstring for the calls it makes).
Long jobs run in napari workers; when the dock or napari closes, a running job is asked
to stop at its next step and waited for, so every file it writes is complete. Annotation
layers are autosaved to the recovery folder (``_qt/autosave.py``); a bar above the tabs
offers what an earlier session left unsaved.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from qtpy.QtCore import QEvent, QObject, QSize, Qt
from qtpy.QtWidgets import (
    QApplication,
    QMainWindow,
    QScrollArea,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from napari_pix2rep import __version__
from napari_pix2rep._qt.autosave import Autosaver, RecoveryBar
from napari_pix2rep._qt.common import Links
from napari_pix2rep._qt.measure_panel import MeasurePanel
from napari_pix2rep._qt.model_box import ModelBox
from napari_pix2rep._qt.pretrain_panel import PretrainPanel
from napari_pix2rep._qt.runner import JobRunner, shutdown_all, warm_up
from napari_pix2rep._qt.segment_panel import SegmentPanel
from napari_pix2rep._qt.settings import Settings
from napari_pix2rep.annotate.recovery import default_folder
from napari_pix2rep.model.model_info import summary

#: How long closing waits for a running job to reach its next step and save (seconds).
CLOSE_TIMEOUT_S = 120.0


def _shutdown(runners: list[JobRunner], links: Links, autosaver: Autosaver, *_: Any) -> None:
    """Save unsaved annotations, stop the jobs (waiting for them), drop the event links."""
    try:
        autosaver.shutdown()
    except RuntimeError:  # the Qt side is already gone
        pass
    for runner in runners:
        try:
            runner.shutdown(CLOSE_TIMEOUT_S)
        except RuntimeError:  # the Qt side is already gone
            pass
    links.disconnect_all()


class _PanelScroll(QScrollArea):
    """A vertical scroll area never narrower than its panel needs: no horizontal scroll
    bar (the dock keeps the width of its widest panel instead)."""

    def __init__(self, panel: QWidget) -> None:
        super().__init__()
        self.setWidgetResizable(True)
        self.setWidget(panel)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt API)
        hint = super().minimumSizeHint()
        need = self.widget().minimumSizeHint().width()
        need += self.verticalScrollBar().sizeHint().width() + 2 * self.frameWidth()
        return QSize(max(hint.width(), need), hint.height())


class _CloseWatcher(QObject):
    """Event filter on napari's main window: stop our jobs before the window closes."""

    def __init__(self, runners: list[JobRunner], autosaver: Autosaver, parent: QObject) -> None:
        super().__init__(parent)
        self.runners = runners
        self.autosaver = autosaver

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt API)
        if event.type() == QEvent.Close:
            self.autosaver.flush_all()
            for runner in self.runners:
                runner.shutdown(CLOSE_TIMEOUT_S)
        return False


class Pix2RepDock(QWidget):
    """Few-shot cardiac segmentation: annotate a few slices, segment, correct, measure."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.settings = Settings()
        self.links = Links()
        self.autosaver = Autosaver(napari_viewer, default_folder(), self.links)
        self.recovery_bar = RecoveryBar(self.autosaver)

        self.model_box = ModelBox(self.settings)
        self.segment_panel = SegmentPanel(napari_viewer, self.model_box, self.settings, self.links)
        self.measure_panel = MeasurePanel(
            napari_viewer, self.settings, self.links, provenance=self._provenance
        )
        self.pretrain_panel = PretrainPanel(
            napari_viewer, self.model_box, self.settings, self.links
        )
        self.tabs = QTabWidget()
        for panel, title in (
            (self.segment_panel, "Segment"),
            (self.measure_panel, "Measures"),
            (self.pretrain_panel, "Pretrain"),
        ):
            self.tabs.addTab(_PanelScroll(panel), title)
        self.tabs.setCurrentIndex(self.settings.get("dock/tab", 0))
        self.tabs.currentChanged.connect(self._tab_changed)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.model_box)
        layout.addWidget(self.recovery_bar)
        layout.addWidget(self.tabs, 1)

        self.runners = [self.segment_panel.runner, self.pretrain_panel.runner]
        # the runners are parentless QObjects kept alive by this list and the closure
        self.destroyed.connect(partial(_shutdown, list(self.runners), self.links, self.autosaver))
        self._close_watcher: _CloseWatcher | None = None
        app = QApplication.instance()
        if app is not None and not app.property("napari_pix2rep_quit_hook"):
            app.aboutToQuit.connect(shutdown_all)
            app.setProperty("napari_pix2rep_quit_hook", True)

        for runner in self.runners:
            runner.running_changed.connect(self._watch_close)
        warm_up()

    def showEvent(self, event: Any) -> None:  # noqa: N802 (Qt API)
        super().showEvent(event)
        self._watch_close()

    def _watch_close(self, *_: Any) -> None:
        """Once docked, watch napari's main window so closing it stops our jobs first."""
        if self._close_watcher is not None:
            return
        parent = self.parentWidget()
        while parent is not None and not isinstance(parent, QMainWindow):
            parent = parent.parentWidget()
        if parent is not None:
            self._close_watcher = _CloseWatcher(self.runners, self.autosaver, self)
            parent.installEventFilter(self._close_watcher)

    def _tab_changed(self, index: int) -> None:
        self.settings.set("dock/tab", index)
        if self.tabs.widget(index).widget() is self.segment_panel:
            self.segment_panel.refresh_summary()
        elif self.tabs.widget(index).widget() is self.measure_panel:
            self.measure_panel.refresh_layers()

    def _provenance(self) -> list[tuple[str, str]]:
        """The model rows of the Measures report: the model file, the session's segmenter."""
        path, info = self.model_box.path, self.model_box.info
        model = f"{Path(path).name}: {summary(info)}" if info is not None else path or "none"
        rows = [("Model file", model)]
        session = self.segment_panel.session
        if session.segmenter is not None:
            mode = session.segmenter.meta.get("mode")
            how = {"linear": "linear probe", "finetune": "fine-tuned"}.get(mode, "trained")
            rows.append(("Segmenter", f"{how} in this session on {session.segmenter_source}"))
        rows.append(("Software", f"napari-pix2rep {__version__}"))
        return rows

    def shutdown(self, timeout_s: float = CLOSE_TIMEOUT_S) -> bool:
        """Save unsaved annotations, stop running jobs and wait for them (also done
        automatically on close)."""
        self.autosaver.flush_all()
        return all(r.shutdown(timeout_s) for r in self.runners)
