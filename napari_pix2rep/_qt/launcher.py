"""``pix2rep gui``: napari with the given images (or the phantom) and the Pix2Rep dock."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

PLUGIN = "napari-pix2rep"
WIDGET = "Pix2Rep"


def make_viewer(paths: Sequence[str] = (), *, show: bool = True) -> tuple[Any, Any]:
    """A napari viewer with ``paths`` opened by the plugin's reader (the 3D phantom sample
    when none) and the Pix2Rep dock; returns ``(viewer, dock widget)``."""
    import napari

    viewer = napari.Viewer(title="napari-pix2rep", show=show)
    if paths:
        for path in paths:
            viewer.open(str(path), plugin=PLUGIN)
    else:
        viewer.open_sample(PLUGIN, "phantom_3d")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    return viewer, widget


def launch(paths: Sequence[str] = ()) -> None:
    """Open napari as :func:`make_viewer` does and run its event loop until it closes."""
    import napari

    make_viewer(list(paths))
    napari.run()
