"""The dock's settings file holds plain text only: a pickled object in it never runs."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("qtpy")

#: Written by Qt itself in another process (in-process, QSettings would serve its cache):
#: a "model/path" whose un-pickling creates MARKER, beside old plain values.
WRITE_WITH_QSETTINGS = textwrap.dedent(
    """
    import sys
    from qtpy.QtCore import QSettings

    ini, marker = sys.argv[1], sys.argv[2]

    class Payload:
        def __reduce__(self):
            return (exec, (f"open({marker!r}, 'w').close()",))

    q = QSettings(ini, QSettings.IniFormat)
    q.setValue("model/path", Payload())
    q.setValue("segment/classes", "background, LV")
    q.setValue("segment/steps", 123)
    q.setValue("segment/uncertainty", True)
    q.setValue("pretrain/out", "C:\\\\models\\\\pt \\"1\\".pt")
    q.setValue("device", "cpu")
    q.setValue("x/name", "\\u00e9 \\U0001f600 1a")
    q.sync()
    """
)


@pytest.fixture
def qt_written_settings(tmp_path, monkeypatch):
    """``(ini, marker)``: an INI file written by QSettings in a fresh process."""
    from napari_pix2rep._qt.settings import SETTINGS_ENV

    ini, marker = tmp_path / "dock.ini", tmp_path / "marker"
    script = tmp_path / "write.py"
    script.write_text(WRITE_WITH_QSETTINGS)
    subprocess.run([sys.executable, str(script), str(ini), str(marker)], check=True)
    if "@Variant(" not in ini.read_text(errors="replace"):
        pytest.skip("this Qt binding stores no pickled Python object in QSettings")
    assert not marker.exists()
    monkeypatch.setenv(SETTINGS_ENV, str(ini))
    return ini, marker


def test_pickled_setting_runs_nothing_and_plain_values_still_work(
    make_napari_viewer, qt_written_settings
):
    from napari_pix2rep._qt.dock import Pix2RepDock
    from napari_pix2rep._qt.model_box import shipped_backbone

    ini, marker = qt_written_settings
    dock = Pix2RepDock(make_napari_viewer())
    assert not marker.exists(), "opening the dock un-pickled the settings file"
    shipped = shipped_backbone()
    assert dock.model_box.path == (str(shipped) if shipped else "")  # the default
    seg = dock.segment_panel
    assert seg.classes() == ("background", "LV")  # quoted by Qt: read back as text
    assert seg.steps_spin.value() == 123 and seg.uncertainty_check.isChecked()
    assert dock.model_box.device == "cpu"
    assert dock.settings.get("pretrain/out", "") == 'C:\\models\\pt "1".pt'
    assert dock.settings.get("x/name", "") == "\u00e9 \U0001f600 1a"

    dock.tabs.setCurrentIndex(1)  # any change rewrites the file: plain text only
    text = ini.read_text()
    assert "@Variant" not in text and "tab=1" in text
    assert not list(ini.parent.glob(".dock.ini.*"))  # no temporary file left
    assert not marker.exists()
    dock.deleteLater()


def test_values_round_trip_through_the_file_and_qt(tmp_path):
    from qtpy.QtCore import QSettings

    from napari_pix2rep._qt.settings import read_settings, write_settings

    values = {
        "device": "cpu",
        "model/path": "/data/models/pix2rep small.pt",
        "segment/classes": "background, RV, MYO, LV",
        "x/at": "@home",
        "x/windows": 'C:\\Users\\é "q"\n',
        "x/unicode": "é1ab 😀 ∆t",  # escaped as ASCII: Qt 5 and Qt 6 read it alike
        "x/space": " leading",
        "x/empty": "",
    }
    ini = tmp_path / "s.ini"
    write_settings(ini, values)
    assert ini.read_bytes().isascii()
    assert read_settings(ini) == values
    q = QSettings(str(ini), QSettings.IniFormat)  # an older dock reads the new file
    assert {k: q.value(k) for k in values} == values


@pytest.mark.parametrize(
    "text",
    [
        "\x00\x01 not an INI file \xff",
        "model/path=before any section\n",
        "[model]\npath=@ByteArray(abc)\n[segment]\nsteps=@Variant(\\0\\0\\0\\x7f)\n",
    ],
)
def test_unreadable_settings_fall_back_to_defaults(tmp_path, monkeypatch, text):
    from napari_pix2rep._qt.settings import SETTINGS_ENV, Settings

    ini = tmp_path / "bad.ini"
    ini.write_text(text, encoding="latin-1")
    monkeypatch.setenv(SETTINGS_ENV, str(ini))
    s = Settings()
    assert s.get("model/path", "default") == "default"
    assert s.get("segment/steps", 300) == 300
