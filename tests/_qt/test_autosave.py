"""Painted work survives: annotation layers autosave off the GUI thread, a killed napari's
painting comes back, a normal save forgets the copy."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import nibabel as nib
import numpy as np
import pytest

from napari_pix2rep._qt import layers as L
from napari_pix2rep._qt.autosave import Autosaver
from napari_pix2rep._qt.common import Links
from napari_pix2rep.annotate import recovery as R
from napari_pix2rep.annotate.loop import BACKGROUND_KEY

CLASSES = ["background", "RV", "MYO", "LV"]

#: napari in another process, autosaving as the dock does (every 0.5 s here; the dock's
#: own wiring is tested below): opens the image, paints with the brush, marks a slice
#: background-only, writes what it painted to truth.npy; once that is autosaved it goes
#: on painting, one voxel of frame 0 every 50 ms in flat order (0, 1, 2, ...), until it
#: is killed
PAINTER = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    import napari
    from qtpy.QtCore import QTimer
    from napari_pix2rep._qt import layers as L
    from napari_pix2rep._qt.autosave import Autosaver
    from napari_pix2rep._qt.common import Links
    from napari_pix2rep.annotate.loop import BACKGROUND_KEY

    image_path, truth, folder = sys.argv[1], sys.argv[2], sys.argv[3]
    viewer = napari.Viewer()
    autosaver = Autosaver(viewer, folder, Links(), delay_ms=500)
    (image,) = viewer.open(image_path, plugin="napari-pix2rep")
    layer = L.add_annotation_layer(viewer, image, ["background", "RV", "MYO", "LV"])
    layer.brush_size = 3
    layer.metadata[BACKGROUND_KEY] = [4]
    for t, z, y, x, label in [(1, 2, 8, 8, 3), (1, 2, 12, 9, 1), (2, 3, 5, 20, 2)]:
        layer.paint((t, z, y, x), label)
    np.save(truth + ".part.npy", np.asarray(layer.data))
    os.replace(truth + ".part.npy", truth)
    strokes = []

    def stroke():
        k = len(strokes)
        zyx = np.unravel_index(k, layer.data.shape[1:])
        index = (np.array([0]), *(np.array([v]) for v in zyx))
        L.write_indices_with_history(layer, index, np.array([1]))
        strokes.append(k)

    timer = QTimer()
    timer.timeout.connect(stroke)
    autosaver.saved.connect(lambda _: timer.start(50))
    napari.run()
    """
)


def _image(tmp_path) -> str:
    path = tmp_path / "cine.nii.gz"
    data = np.random.default_rng(0).random((24, 24, 5, 3)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([1.5, 1.5, 8.0, 1.0])), path)
    return str(path)


def _open(viewer, path):
    (image,) = viewer.open(path, plugin="napari-pix2rep")
    return image


def test_killed_napari_painting_comes_back(tmp_path, dock, qtbot, notes):
    image_path = _image(tmp_path)
    folder = R.default_folder()  # the fixture's temporary folder, as the dock sees it
    assert str(folder).startswith(str(tmp_path))
    script = tmp_path / "painter.py"
    script.write_text(PAINTER)
    truth = tmp_path / "truth.npy"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = tmp_path / "painter.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, str(script), image_path, str(truth), str(folder)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline, streaming = time.monotonic() + 90, False
        while time.monotonic() < deadline and proc.poll() is None and not streaming:
            time.sleep(0.2)
            entries = R.list_recoveries(folder, image_path) if truth.exists() else []
            # the painting after truth.npy is being autosaved: kill it in the middle
            streaming = bool(entries) and entries[0].load()[0].any()
        assert proc.poll() is None, log.read_text()[-2000:]
        assert streaming, "no autosave of the ongoing painting within 90 s"
        proc.send_signal(signal.SIGKILL)  # no chance to save anything on the way out
    finally:
        proc.kill()
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL

    (entry,) = R.list_recoveries(folder, image_path)
    assert not entry.live_elsewhere()
    recovered = entry.load()
    # exactly what was painted up to the last autosave: the brush strokes, and the first
    # k voxels of the painting that went on
    painted = np.load(truth)
    assert set(np.unique(painted)) == {0, 1, 2, 3} and not painted[0].any()
    k = int(np.count_nonzero(recovered[0]))
    painted[0].reshape(-1)[:k] = 1
    assert k > 0
    np.testing.assert_array_equal(recovered, painted)
    assert entry.background == {4}

    # reopening the image in a new napari offers the work back, without a dialog
    viewer, widget = dock
    image = _open(viewer, image_path)
    bar = widget.recovery_bar
    assert bar.isVisibleTo(widget) and "annotations" in bar.label.text()
    assert any("Unsaved annotations were recovered" in m for _, m in notes)
    bar.restore_button.click()
    (layer,) = L.labels_layers(viewer)
    np.testing.assert_array_equal(np.asarray(layer.data), painted)
    assert L.role(layer) == L.ANNOTATION and L.linked_image(viewer, layer) == image.name
    assert layer.metadata[BACKGROUND_KEY] == [4]
    assert list(layer.features["class"]) == CLASSES
    assert not bar.isVisibleTo(widget)  # restored: this layer now owns the entry
    assert R.layer_entry(layer.metadata) == (folder, entry.key)

    # saving it the normal way removes the autosaved copy
    L.export_labels(layer, str(tmp_path / "saved_labels.nii.gz"))
    assert R.list_recoveries(folder, image_path) == []


@pytest.fixture
def saver(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    links = Links()
    autosaver = Autosaver(viewer, tmp_path / "rec", links, delay_ms=150)
    yield viewer, autosaver
    autosaver.shutdown()
    links.disconnect_all()


def test_edits_autosave_in_a_worker_and_only_annotations(saver, tmp_path, qtbot):
    viewer, autosaver = saver
    image_path = _image(tmp_path)
    image = _open(viewer, image_path)
    threads: list[str] = []
    autosaver.saved.connect(lambda _: threads.append(threading.current_thread().name))
    layer = L.add_annotation_layer(viewer, image, CLASSES)
    other = L.add_labels_for(viewer, image, L.SEGMENTATION, CLASSES)  # not autosaved
    L.write_indices_with_history(other, tuple(np.array([1]) for _ in range(4)), np.array([2]))

    with qtbot.waitSignal(autosaver.saved, timeout=10_000):
        layer.paint((0, 1, 10, 10), 3)
    (entry,) = R.list_recoveries(autosaver.folder, image_path)
    np.testing.assert_array_equal(entry.load(), np.asarray(layer.data))
    assert entry.layer_name == layer.name and entry.classes == tuple(CLASSES)
    assert threads == ["MainThread"]  # the signal is delivered on the GUI thread ...
    # ... while the write ran in the autosave worker, and nothing was offered: it is ours
    assert any(t.name.startswith("pix2rep-autosave") for t in threading.enumerate())
    assert not autosaver.offers

    # a removed layer with unsaved edits is saved at once, then offered for restoring
    layer.metadata[BACKGROUND_KEY] = [7]
    layer.paint((2, 4, 3, 3), 1)
    expected = np.array(layer.data, copy=True)
    viewer.layers.remove(layer)
    qtbot.waitUntil(lambda: bool(autosaver.offers), timeout=10_000)
    (entry,) = R.list_recoveries(autosaver.folder, image_path)
    np.testing.assert_array_equal(entry.load(), expected)
    assert entry.background == {7}
    assert [e.key for e, _ in autosaver.offers] == [entry.key]

    # a duplicate of a restored layer gets its own entry, never the same file
    (restored,) = autosaver.restore_all()
    assert R.layer_entry(restored.metadata) == (autosaver.folder, entry.key)
    dup = viewer.add_labels(np.asarray(restored.data).copy(), metadata=dict(restored.metadata))
    assert R.layer_entry(dup.metadata)[1] != entry.key
    assert not autosaver.offers
    autosaver.discard_all()
    assert R.list_recoveries(autosaver.folder, image_path) == [entry]  # still owned


def test_discard_and_a_failing_folder(saver, tmp_path, qtbot, notes):
    viewer, autosaver = saver
    image_path = _image(tmp_path)
    R.save_recovery(
        autosaver.folder,
        image_path,
        "old",
        np.ones((3, 5, 24, 24), np.uint8),
        image_name="cine",
        layer_name="cine annotations",
        classes=CLASSES,
    )
    _open(viewer, image_path)
    assert len(autosaver.offers) == 1
    autosaver.discard_all()
    assert not autosaver.offers and R.list_recoveries(autosaver.folder, image_path) == []

    # an unwritable recovery folder: one sentence, painting goes on
    blocker = tmp_path / "blocked"
    blocker.write_text("a file, not a folder")
    autosaver.folder = blocker
    layer = L.add_annotation_layer(viewer, _open(viewer, image_path), CLASSES)
    with qtbot.waitSignal(autosaver.failed, timeout=10_000) as got:
        layer.paint((0, 0, 5, 5), 2)
    assert got.args[0].startswith("Autosave failed: ") and got.args[0].endswith(".")
    assert any(m == got.args[0] for s, m in notes if "error" in s)
