"""GUI test fixtures: dock settings in a temporary INI file, notifications, the dock."""

from __future__ import annotations

import pytest

PLUGIN = "napari-pix2rep"


@pytest.fixture(autouse=True)
def _pix2rep_settings(tmp_path, monkeypatch):
    """Never read or write the user's dock settings (or recovery folder) in tests."""
    from napari_pix2rep._qt.settings import SETTINGS_ENV
    from napari_pix2rep.annotate.recovery import RECOVERY_ENV

    monkeypatch.setenv(SETTINGS_ENV, str(tmp_path / "pix2rep-settings.ini"))
    monkeypatch.setenv(RECOVERY_ENV, str(tmp_path / "recovery"))
    monkeypatch.delenv("NAPARI_PIX2REP_MODEL", raising=False)
    # the dock's tests of learning from paint start from the backbone; the default
    # segmenter's own test sets this variable itself
    monkeypatch.setenv("NAPARI_PIX2REP_SEGMENTER", "")


@pytest.fixture
def notes():
    """New napari notifications as ``[(severity, message)]``, collected live."""
    from napari.utils.notifications import notification_manager

    got: list[tuple[str, str]] = []

    def record(n):
        got.append((str(n.severity), str(n.message)))

    notification_manager.notification_ready.connect(record)
    yield got
    notification_manager.notification_ready.disconnect(record)


@pytest.fixture
def dock(make_napari_viewer):
    """``(viewer, Pix2RepDock)`` docked through the plugin manifest."""
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Pix2Rep")
    yield viewer, widget
    widget.shutdown(60)


@pytest.fixture
def wait_idle(qtbot):
    """``wait_idle(runner, timeout_s=180)``: process events until the runner's job ended."""

    def wait(runner, timeout_s: float = 180.0) -> None:
        qtbot.waitUntil(lambda: not runner.running, timeout=int(timeout_s * 1000))

    return wait
