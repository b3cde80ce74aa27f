"""``pix2rep gui``: napari with the given images (or the phantom) and the Pix2Rep dock."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Sequence
from typing import Any

PLUGIN = "napari-pix2rep"
WIDGET = "Pix2Rep"
#: The window ``pix2rep gui`` opens (logical pixels), cut to the screen's free area.
WINDOW_SIZE = (1600, 1000)
_BINDINGS = ("PyQt5", "PyQt6", "PySide2", "PySide6")


def prefer_qt6() -> str | None:
    """Make qtpy (and so napari) pick PyQt6 when it is installed beside PyQt5 -- qtpy would
    pick PyQt5, whose napari backend is deprecated. Does nothing when ``QT_API`` is set
    or a Qt binding is already imported; returns the ``QT_API`` it set, if any."""
    if os.environ.get("QT_API") or any(b in sys.modules for b in _BINDINGS):
        return None
    if importlib.util.find_spec("PyQt6") is None:
        return None
    os.environ["QT_API"] = "pyqt6"
    return "pyqt6"


def fit_window(viewer: Any, size: tuple[int, int] = WINDOW_SIZE) -> tuple[int, int, int, int]:
    """Grow napari's window to ``size`` (never past the screen's free area), centred there,
    so the dock needs no horizontal scrolling; returns ``(left, top, width, height)``."""
    from qtpy.QtWidgets import QApplication

    _, _, width, height = viewer.window.geometry()
    screen = QApplication.primaryScreen() if QApplication.instance() else None
    qt_window = viewer.window._qt_window  # napari keeps its QMainWindow private
    if screen is None or qt_window.isMaximized() or qt_window.isFullScreen():
        return viewer.window.geometry()  # no screen, or maximised / full screen already
    free = screen.availableGeometry()
    width = min(free.width(), max(width, size[0]))
    height = min(free.height(), max(height, size[1]))
    left = free.x() + (free.width() - width) // 2
    top = free.y() + (free.height() - height) // 2
    viewer.window.set_geometry(left, top, width, height)
    return left, top, width, height


def make_viewer(paths: Sequence[str] = (), *, show: bool = True) -> tuple[Any, Any]:
    """A napari viewer with ``paths`` opened by the plugin's reader (the 3D phantom sample
    when none) and the Pix2Rep dock, sized by :func:`fit_window`; returns
    ``(viewer, dock widget)``."""
    import napari

    viewer = napari.Viewer(title="napari-pix2rep", show=show)
    if paths:
        for path in paths:
            viewer.open(str(path), plugin=PLUGIN)
    else:
        viewer.open_sample(PLUGIN, "phantom_3d")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    fit_window(viewer)
    return viewer, widget


def launch(paths: Sequence[str] = ()) -> None:
    """Open napari as :func:`make_viewer` does (on PyQt6 when installed) and run its event
    loop until it closes."""
    prefer_qt6()
    import napari

    make_viewer(list(paths))
    napari.run()
