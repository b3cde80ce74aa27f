"""The Qt binding: one for napari (qtpy) and the tests (pytest-qt), PyQt6 where installed,
and no PyQt5 deprecation warning when the window opens."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("qtpy")

REPO = Path(__file__).resolve().parents[2]


def test_qt_extra_installs_pyqt6():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["optional-dependencies"]["qt"] == ["PyQt6>=6.5"]


def test_qtpy_and_pytest_qt_use_one_binding(qapp):
    import qtpy
    from pytestqt.qt_compat import qt_api

    assert qtpy.API == qt_api.pytest_qt_api, (qtpy.API_NAME, qt_api.pytest_qt_api)
    assert type(qapp).__module__.startswith(qtpy.API_NAME)
    required = os.environ.get("PYTEST_QT_API")  # .ci/run asks for pyqt6
    if required:
        assert qtpy.API == required.lower()


@pytest.mark.skipif(importlib.util.find_spec("PyQt6") is None, reason="PyQt6 not installed")
def test_launch_prefers_pyqt6_beside_pyqt5():
    """qtpy alone picks PyQt5 when both are installed; ``pix2rep gui`` asks for PyQt6."""
    env = {k: v for k, v in os.environ.items() if k not in ("QT_API", "FORCE_QT_API")}
    code = (
        "from napari_pix2rep._qt.launcher import prefer_qt6\n"
        "prefer_qt6()\n"
        "import qtpy\n"
        "print(qtpy.API_NAME)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "PyQt6", out.stderr


def test_no_pyqt5_deprecation_warning_at_launch(make_napari_viewer, monkeypatch, notes, qtbot):
    import napari
    import qtpy

    from napari_pix2rep._qt import launcher

    if qtpy.API_NAME == "PyQt5":
        pytest.skip("napari warns about its PyQt5 backend by design; the qt extra is PyQt6")
    monkeypatch.setattr(napari, "Viewer", lambda **kw: make_napari_viewer(**kw))
    viewer, _ = launcher.make_viewer([], show=True)
    qtbot.wait(100)
    assert viewer.window._qt_window.isVisible()
    assert not [m for _, m in notes if "PyQt5" in m], notes
