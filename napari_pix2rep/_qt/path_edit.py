"""A line edit for file paths that, when it is not being edited, elides a long path in the
middle ("/home/me/…/models/pix2rep_small.pt") and always has the full path in its tooltip."""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtGui import QPainter, QPalette
from qtpy.QtWidgets import QLineEdit, QStyle, QStyleOptionFrame, QWidget


class PathEdit(QLineEdit):
    """``text()`` is always the full path; only what is painted is elided."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._hint = ""
        self.textChanged.connect(self._update_tooltip)

    def setToolTip(self, text: str) -> None:  # noqa: N802 (Qt API)
        """The tooltip: the full path, then ``text``."""
        self._hint = text
        self._update_tooltip()

    def _update_tooltip(self, *_: Any) -> None:
        super().setToolTip("\n".join(t for t in (self.text(), self._hint) if t))

    def _text_rect(self) -> Any:
        opt = QStyleOptionFrame()
        self.initStyleOption(opt)
        rect = self.style().subElementRect(QStyle.SE_LineEditContents, opt, self)
        m = self.textMargins()
        return rect.adjusted(m.left() + 2, m.top(), -(m.right() + 2), -m.bottom())

    def display_text(self) -> str:
        """What the box shows now: the path, elided in the middle when it does not fit
        (the full path while the box has the keyboard focus)."""
        text = self.text()
        if self.hasFocus() or not text:
            return text
        return self.fontMetrics().elidedText(text, Qt.ElideMiddle, self._text_rect().width())

    def paintEvent(self, event: Any) -> None:  # noqa: N802 (Qt API)
        shown = self.display_text()
        if shown == self.text():
            super().paintEvent(event)
            return
        painter = QPainter(self)
        opt = QStyleOptionFrame()
        self.initStyleOption(opt)
        self.style().drawPrimitive(QStyle.PE_PanelLineEdit, opt, painter, self)
        painter.setPen(self.palette().color(QPalette.Text))
        painter.drawText(self._text_rect(), Qt.AlignLeft | Qt.AlignVCenter, shown)
        painter.end()
