"""The model and device choice shared by the dock's panels.

Library calls: ``model_info.read_model_info`` / ``summary`` / ``undertrained_warning``
(the active model's kind, pretraining steps and data, from its metadata only).
"""

from __future__ import annotations

import html
import os
from pathlib import Path

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QWidget,
)

from napari_pix2rep._qt.path_edit import PathEdit
from napari_pix2rep._qt.settings import Settings
from napari_pix2rep.model.checkpoint import ModelFileError
from napari_pix2rep.model.model_info import (
    ModelInfo,
    read_model_info,
    summary,
    undertrained_warning,
)


def shipped_backbone() -> Path | None:
    """The shipped backbone (or ``$NAPARI_PIX2REP_MODEL``), None when there is none."""
    from napari_pix2rep.model.checkpoint import default_backbone_path

    try:
        return default_backbone_path()
    except ModelFileError:
        return None


def shipped_model() -> Path | None:
    """The default cardiac segmenter (it segments without painting) when it is shipped
    (or ``$NAPARI_PIX2REP_SEGMENTER``), else the shipped backbone; None when neither."""
    from napari_pix2rep.model.checkpoint import default_segmenter_path

    return default_segmenter_path() or shipped_backbone()


def device_choices() -> list[str]:
    from napari_pix2rep.model.device import available_devices

    return ["auto", *available_devices()]


class ModelBox(QGroupBox):
    """Model file (the shipped default model, the shipped backbone, a file, or the one
    pretrained here) and device."""

    model_changed = Signal(str)

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__("Model", parent)
        self.settings = settings
        self.pretrained_path: str | None = None  # set by the pretraining panel
        grid = QGridLayout(self)

        self.path_edit = PathEdit()
        self.path_edit.setPlaceholderText("backbone or segmenter file (.pt)")
        self.path_edit.setToolTip(
            "A Pix2Rep backbone (pretrained) or segmenter file; Segment trains on its features."
        )
        self.path_edit.editingFinished.connect(self._edited)
        self.browse_button = QPushButton("File…")
        self.browse_button.clicked.connect(self.browse)
        self.shipped_button = QPushButton("Shipped")
        self.shipped_button.setToolTip(
            "The default cardiac model shipped with napari-pix2rep: it segments every slice "
            "before anything is painted (else the shipped backbone)"
        )
        self.shipped_button.clicked.connect(self.use_shipped)
        self.backbone_button = QPushButton("Backbone")
        self.backbone_button.setToolTip(
            "The Pix2Rep backbone shipped with napari-pix2rep: Segment learns from your paint only"
        )
        self.backbone_button.clicked.connect(self.use_backbone)
        self.pretrained_button = QPushButton("Pretrained here")
        self.pretrained_button.setToolTip(
            "The checkpoint of the Pretrain tab (also while it runs)"
        )
        self.pretrained_button.clicked.connect(self.use_pretrained)
        buttons = QHBoxLayout()
        for b in (
            self.browse_button,
            self.shipped_button,
            self.backbone_button,
            self.pretrained_button,
        ):
            buttons.addWidget(b)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setTextFormat(Qt.RichText)
        self.warning = QLabel()
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet("color: #e8a33d; font-weight: bold;")
        self.warning.setVisible(False)
        self.info: ModelInfo | None = None  # the active model's metadata, when readable

        self.device_combo = QComboBox()
        self.device_combo.addItems(device_choices())
        self.device_combo.setToolTip("Where training and prediction run (auto: GPU if any)")
        device = settings.get("device", "auto")
        if self.device_combo.findText(device) >= 0:
            self.device_combo.setCurrentText(device)
        self.device_combo.currentTextChanged.connect(lambda d: self.settings.set("device", d))

        grid.addWidget(self.path_edit, 0, 0, 1, 2)
        grid.addLayout(buttons, 1, 0, 1, 2)
        grid.addWidget(self.status, 2, 0, 1, 2)
        grid.addWidget(self.warning, 3, 0, 1, 2)
        grid.addWidget(QLabel("Device"), 4, 0)
        grid.addWidget(self.device_combo, 4, 1)

        self.shipped = shipped_model()
        self.backbone = shipped_backbone()
        self.shipped_button.setEnabled(self.shipped is not None)
        self.backbone_button.setEnabled(self.backbone is not None)
        last = settings.get("model/path", "")
        if last and Path(last).is_file():
            self.set_path(last)
        elif self.shipped is not None:
            self.set_path(str(self.shipped))
        else:
            self.set_path(last)

    # -- API --------------------------------------------------------------------------
    @property
    def path(self) -> str:
        return self.path_edit.text().strip()

    @property
    def device(self) -> str:
        return self.device_combo.currentText()

    def set_path(self, path: str | os.PathLike | None) -> None:
        text = str(path) if path else ""
        self.path_edit.setText(text)
        self._edited()

    def browse(self) -> None:
        start = self.path or str(Path.home())
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose a Pix2Rep model", start, "PyTorch model (*.pt *.pth);;All files (*)"
        )
        if path:
            self.set_path(path)

    def use_shipped(self) -> None:
        if self.shipped is not None:
            self.set_path(str(self.shipped))

    def use_backbone(self) -> None:
        if self.backbone is not None:
            self.set_path(str(self.backbone))

    def use_pretrained(self) -> None:
        if self.pretrained_path and Path(self.pretrained_path).is_file():
            self.set_path(self.pretrained_path)
        else:
            from napari.utils.notifications import show_info

            show_info("No pretrained checkpoint yet: start pretraining in the Pretrain tab.")

    def set_pretrained(self, path: str | None) -> None:
        self.pretrained_path = path

    # -- internals --------------------------------------------------------------------
    def _edited(self) -> None:
        path = self.path
        self.info, warning = None, None
        if not path:
            text = "No model chosen: pick a backbone file or pretrain one (Pretrain tab)."
        elif not Path(path).is_file():
            text = f"{Path(path).name} does not exist."
        else:
            shipped = self.shipped is not None and Path(path) == self.shipped
            where = "the shipped backbone" if shipped else f"in {Path(path).parent}"
            text = f"<b>Active: {html.escape(Path(path).name)}</b> ({html.escape(where)})"
            try:
                self.info = read_model_info(path)
            except ModelFileError as exc:
                text += f"<br>{html.escape(str(exc))}"
            else:
                text += f"<br>{html.escape(summary(self.info))}"
                warning = undertrained_warning(self.info, self._shipped_info())
        self.status.setText(text)
        self.warning.setText(warning or "")
        self.warning.setVisible(warning is not None)
        self.settings.set("model/path", path)
        self.model_changed.emit(path)

    def _shipped_info(self) -> ModelInfo | None:
        if self.shipped is None:
            return None
        try:
            return read_model_info(self.shipped)
        except ModelFileError:
            return None
