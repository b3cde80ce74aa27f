"""A small live loss curve painted with QPainter (no plotting library)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from qtpy.QtCore import QPointF, QSize, Qt
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget

#: At most this many points are drawn (longer runs are averaged into buckets).
MAX_POINTS = 400


class LossPlot(QWidget):
    """Pretraining loss against step; a faint raw curve and a smoothed one."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.values: list[float] = []
        self.setMinimumHeight(90)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Preferred)
        self.setToolTip("Pretraining loss per step (smoothed curve in bold)")

    def sizeHint(self) -> QSize:
        return QSize(240, 110)

    def clear(self) -> None:
        self.values = []
        self.update()

    def extend(self, values: Iterable[float]) -> None:
        self.values.extend(float(v) for v in values if np.isfinite(v))
        self.update()

    @staticmethod
    def _bucket(values: np.ndarray) -> np.ndarray:
        if values.size <= MAX_POINTS:
            return values
        edges = np.linspace(0, values.size, MAX_POINTS + 1).astype(int)
        return np.add.reduceat(values, edges[:-1]) / np.diff(edges)

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt API)
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing)
        w, h = self.width(), self.height()
        fg = self.palette().color(self.foregroundRole())
        p.setPen(QPen(QColor(fg.red(), fg.green(), fg.blue(), 90), 1))
        p.drawRect(0, 0, w - 1, h - 1)
        if len(self.values) < 2:
            p.setPen(fg)
            p.drawText(self.rect(), Qt.AlignCenter, "loss curve")
            p.end()
            return
        raw = self._bucket(np.asarray(self.values, dtype=float))
        alpha = 0.1
        smooth = np.empty_like(raw)
        acc = raw[0]
        for i, v in enumerate(raw):
            acc = alpha * v + (1 - alpha) * acc
            smooth[i] = acc
        lo, hi = float(raw.min()), float(raw.max())
        span = hi - lo or 1.0
        pad = 6.0
        xs = np.linspace(pad, w - pad, raw.size)

        def poly(v: np.ndarray) -> QPolygonF:
            ys = h - pad - (v - lo) / span * (h - 2 * pad - 14)
            return QPolygonF([QPointF(float(x), float(y)) for x, y in zip(xs, ys)])

        p.setPen(QPen(QColor(120, 170, 255, 110), 1))
        p.drawPolyline(poly(raw))
        p.setPen(QPen(QColor(255, 170, 60), 2))
        p.drawPolyline(poly(smooth))
        p.setPen(fg)
        p.drawText(int(pad), 12, f"loss {self.values[-1]:.3f}  (min {min(self.values):.3f})")
        p.end()
