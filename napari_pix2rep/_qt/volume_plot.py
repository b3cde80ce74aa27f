"""The Measures tab's volume curve: matplotlib's Qt canvas drawing a ``VolumeCurve``.

The drawing is the library's (:func:`napari_pix2rep.measure.volume_curve.draw_curve`, the same
as the exported PNG) in the colours of napari's theme. matplotlib is imported when the
first curve is shown, not when the dock opens (its import takes a second or two).
"""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QSizePolicy, QVBoxLayout, QWidget

from napari_pix2rep.measure.volume_curve import VolumeCurve, draw_curve


class VolumePlot(QWidget):
    """LV / RV volume over the frames (or at ED and ES), hidden until there is a curve."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.canvas: Any = None  # FigureCanvasQTAgg, made on the first curve
        self.curve: VolumeCurve | None = None
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self.setMinimumHeight(170)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Preferred)
        self.setToolTip("LV and RV volume; dashed: the ED and ES frames")
        self.setVisible(False)

    def _make_canvas(self) -> Any:
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        canvas = FigureCanvasQTAgg(Figure(figsize=(3.2, 1.9), dpi=90))
        canvas.setMinimumHeight(170)
        self._layout.addWidget(canvas)
        return canvas

    def _colors(self) -> tuple[str, str]:
        pal = self.palette()
        return pal.window().color().name(), pal.windowText().color().name()

    def show_curve(self, curve: VolumeCurve | None) -> None:
        """Draw ``curve`` (None: hide the plot)."""
        self.curve = curve
        self.setVisible(curve is not None)
        if curve is None:
            return
        if self.canvas is None:
            self.canvas = self._make_canvas()
        fig = self.canvas.figure
        fig.clear()
        bg, fg = self._colors()
        fig.set_facecolor(bg)
        ax = fig.add_subplot(1, 1, 1)
        ax.set_facecolor(bg)
        draw_curve(ax, curve, color=fg)
        fig.tight_layout(pad=0.4)
        self.canvas.draw_idle()
