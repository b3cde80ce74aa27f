"""``pix2rep gui`` opens a window the dock fits in: no horizontal scrolling at 1366x768,
the model path elided in the middle with the full path in its tooltip."""

from __future__ import annotations

import pytest

pytest.importorskip("qtpy")


@pytest.fixture
def launched(make_napari_viewer, monkeypatch):
    """``(viewer, dock)`` from the launcher, on a window shown on the (virtual) screen."""
    import napari

    from napari_pix2rep._qt import launcher

    monkeypatch.setattr(napari, "Viewer", lambda **kw: make_napari_viewer(**kw))
    return launcher.make_viewer([], show=True)


def _horizontal_overflow(qtbot, widget) -> dict[str, int]:
    """Pixels each tab's panel would need to scroll sideways (0: it fits)."""
    out = {}
    for i in range(widget.tabs.count()):
        widget.tabs.setCurrentIndex(i)
        qtbot.wait(50)
        out[widget.tabs.tabText(i)] = widget.tabs.widget(i).horizontalScrollBar().maximum()
    return out


def test_window_fills_the_free_screen_up_to_its_size(launched, qtbot):
    from qtpy.QtWidgets import QApplication

    from napari_pix2rep._qt.launcher import WINDOW_SIZE

    viewer, _ = launched
    free = QApplication.primaryScreen().availableGeometry()
    left, top, width, height = viewer.window.geometry()
    assert width == min(free.width(), WINDOW_SIZE[0]), (width, free.width())
    assert height == min(free.height(), WINDOW_SIZE[1]), (height, free.height())
    assert free.contains(left, top) and left + width <= free.x() + free.width()


@pytest.mark.parametrize("size", [(1366, 768), (1920, 1080)])
def test_no_horizontal_scrolling_in_the_dock(launched, qtbot, size):
    viewer, widget = launched
    viewer.window.set_geometry(0, 0, *size)
    qtbot.wait(100)
    assert _horizontal_overflow(qtbot, widget) == {"Segment": 0, "Measures": 0, "Pretrain": 0}
    # the dock is narrow enough to leave most of a 1366-pixel window to the image
    assert widget.minimumSizeHint().width() <= 420, widget.minimumSizeHint()


def test_model_path_elided_in_the_middle_with_full_tooltip(launched, tmp_path, qtbot):
    _, widget = launched
    folder = tmp_path / "a-long-folder-name-for-models" / "another-level-of-folders"
    folder.mkdir(parents=True)
    model = folder / "pix2rep_backbone_pretrained_here.pt"
    model.write_bytes(b"x")
    box = widget.model_box
    box.set_path(str(model))
    qtbot.wait(50)
    edit = box.path_edit
    shown = edit.display_text()
    assert edit.text() == box.path == str(model)  # the value itself is never cut
    assert "…" in shown and len(shown) < len(str(model))
    assert shown.startswith(str(model)[:3]) and shown.endswith(".pt")  # cut in the middle
    assert edit.toolTip().splitlines()[0] == str(model)
    assert edit.fontMetrics().horizontalAdvance(shown) <= edit.width()


def test_a_maximised_window_is_left_as_it_is(launched, qtbot, monkeypatch):
    from napari_pix2rep._qt.launcher import fit_window

    viewer, _ = launched
    viewer.window._qt_window.showMaximized()
    qtbot.waitUntil(viewer.window._qt_window.isMaximized, timeout=5000)
    calls = []
    monkeypatch.setattr(viewer.window, "set_geometry", lambda *a: calls.append(a))
    assert fit_window(viewer) == viewer.window.geometry() and calls == []
