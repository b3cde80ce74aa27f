"""The Measures tab's volume curve: drawn in the dock (seen in a screenshot), exported as
CSV + PNG, and the one-page HTML report."""

from __future__ import annotations

import base64
import csv
import re

import numpy as np
import pytest
from qtpy.QtGui import QColor, QImage

from napari_pix2rep.core.classes import BASE_COLORS, LV, RV

PLUGIN = "napari-pix2rep"


def _count_color(image: QImage, rect, rgba, tol: int = 40) -> int:
    """Pixels of ``image`` inside ``rect`` within ``tol`` of the colour ``rgba`` (0-1)."""
    target = [int(round(c * 255)) for c in rgba[:3]]
    n = 0
    for y in range(rect.top(), rect.bottom(), 2):
        for x in range(rect.left(), rect.right(), 2):
            c = QColor(image.pixel(x, y))
            if all(abs(a - b) <= tol for a, b in zip((c.red(), c.green(), c.blue()), target)):
                n += 1
    return n


@pytest.fixture
def shown_dock(make_napari_viewer):
    """``(viewer, dock)`` in a window on the screen, so a screenshot shows the layout."""
    viewer = make_napari_viewer(show=True)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Pix2Rep")
    yield viewer, widget
    widget.shutdown(60)


def test_cine_curve_shows_in_the_dock_and_exports(shown_dock, qtbot, tmp_path, notes):
    viewer, widget = shown_dock
    viewer.open_sample(PLUGIN, "phantom_4d")
    widget.tabs.setCurrentIndex(1)
    panel = widget.measure_panel
    assert not panel.plot.isVisibleTo(panel)  # nothing measured yet
    panel.set_layers("phantom cine truth")
    assert panel.compute() is not None
    curve = panel.curve_data
    assert curve is not None and len(curve.frames) == 12 and not curve.pair
    assert panel.plot.isVisibleTo(panel)

    ax = panel.plot.canvas.figure.axes[0]
    labels = [ln.get_label() for ln in ax.get_lines()]
    assert "LV volume" in labels and "RV volume" in labels
    lv = next(ln for ln in ax.get_lines() if ln.get_label() == "LV volume")
    np.testing.assert_allclose(lv.get_ydata(), curve.lv_ml)
    assert [t.get_text() for t in ax.texts] == [
        f"ED ({curve.frames[curve.ed]})",
        f"ES ({curve.frames[curve.es]})",
    ]
    assert curve.lv_ml[curve.ed] == max(curve.lv_ml) and curve.lv_ml[curve.es] == min(curve.lv_ml)

    # a screenshot of the dock shows the curve: LV- and RV-coloured pixels in the canvas
    widget.tabs.currentWidget().ensureWidgetVisible(panel.plot)
    panel.plot.canvas.draw()
    qtbot.wait(100)
    shot = tmp_path / "dock.png"
    assert widget.grab().save(str(shot))
    image = QImage(str(shot))
    canvas = panel.plot.canvas
    rect = canvas.rect().translated(canvas.mapTo(widget, canvas.rect().topLeft()))
    rect = rect.intersected(image.rect())
    assert rect.height() > 60, "the plot is not on screen"
    assert _count_color(image, rect, BASE_COLORS[LV]) > 20
    assert _count_color(image, rect, BASE_COLORS[RV]) > 20

    # Export: the CSV (every frame, ED and ES marked) and the PNG beside it
    out = panel.export_csv(str(tmp_path / "cine_measures.csv"))
    rows = list(csv.reader(open(out)))
    header = rows.index(["frame", "phase", "segmented", "LV_ml", "RV_ml", "MYO_ml"])
    frames = rows[header + 1 :]
    assert len(frames) == 12 and all(r[2] == "yes" for r in frames)
    assert frames[curve.ed][1] == "ED" and frames[curve.es][1] == "ES"
    assert abs(float(frames[curve.es][3]) - panel.value("LV ESV")) < 1e-3
    png = (tmp_path / "cine_measures.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"

    # Report: indices, the curve, the frames segmented, the model and its provenance
    page = open(panel.export_report(str(tmp_path / "cine_report.html"))).read()
    assert f"<td class='v'>{panel.value('LV EF'):.1f}</td>" in page
    assert "Segmented: frames 0-11 (12 of 12)." in page
    assert "Model file" in page and "napari-pix2rep 0.1.0" in page
    assert "phantom cine truth: a labels layer" in page
    (b64,) = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert base64.b64decode(b64)[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [m for s, m in notes if s == "error"]


def test_ed_es_pair_is_two_points_and_one_volume_has_no_curve(dock, notes):
    from napari_pix2rep.evaluation.phantom import make_phantom

    viewer, widget = dock
    cine = make_phantom(n_slices=6, size=(80, 80), n_frames=6, seed=2)
    spacing = cine.spacing[1:]
    viewer.add_labels(cine.labels[0], name="ED seg", scale=spacing)
    viewer.add_labels(cine.labels[cine.es_frame], name="ES seg", scale=spacing)
    panel = widget.measure_panel
    panel.refresh_layers()
    panel.set_layers("ED seg", "ES seg")
    panel.compute()
    curve = panel.curve_data
    assert curve is not None and curve.pair
    assert curve.lv_ml[0] == panel.value("LV EDV") and curve.lv_ml[1] == panel.value("LV ESV")
    ax = panel.plot.canvas.figure.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["ED", "ES"]
    assert all(ln.get_linestyle() == "None" for ln in ax.get_lines())

    panel.set_layers("ED seg")  # volumes only: no curve, no report
    panel.compute()
    assert panel.curve_data is None and not panel.plot.isVisibleTo(panel)
    assert panel.export_report("unused.html") is None
    assert any("needs a cine" in m for s, m in notes if s == "error")
