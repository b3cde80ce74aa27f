"""The recovery folder: what an autosave writes, lists, restores and forgets (no Qt)."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest

from napari_pix2rep._writer import write_labels
from napari_pix2rep.annotate import recovery as R
from napari_pix2rep.annotate.loop import BACKGROUND_KEY
from napari_pix2rep.io.layer_meta import ANNOTATION, role_metadata, volume_metadata
from napari_pix2rep.io.nifti import read_nifti


def _painted(shape=(3, 5, 16, 16)) -> np.ndarray:
    lab = np.zeros(shape, dtype=np.uint8)
    lab[1, 2, 4:9, 3:7] = 3
    lab[1, 2, 10:12, 10:14] = 1
    lab[2, 0, 0, 0] = 2
    return lab


def _save(folder, src, key="k1", labels=None, background=(7,)):
    return R.save_recovery(
        folder,
        src,
        key,
        _painted() if labels is None else labels,
        image_name="scan",
        layer_name="scan annotations",
        classes=("background", "RV", "MYO", "LV"),
        background=background,
    )


def test_save_list_load_round_trip(tmp_path):
    src = tmp_path / "scan.nii.gz"
    path = _save(tmp_path / "rec", src)
    assert path.is_file() and path.parent.parent == tmp_path / "rec"
    (entry,) = R.list_recoveries(tmp_path / "rec", src)
    np.testing.assert_array_equal(entry.load(), _painted())
    assert entry.load().dtype == np.uint8
    assert entry.background == {7}
    assert (entry.key, entry.layer_name, entry.image_name) == ("k1", "scan annotations", "scan")
    assert entry.classes == ("background", "RV", "MYO", "LV")
    assert entry.shape == (3, 5, 16, 16) and entry.pid == os.getpid()
    assert not entry.live_elsewhere()  # this process wrote it
    assert "scan annotations" in entry.describe()
    # another image's entries are elsewhere; a fresh write of the same key replaces it
    assert R.list_recoveries(tmp_path / "rec", tmp_path / "other.nii.gz") == []
    labels = _painted()
    labels[0, 1, 1, 1] = 1
    _save(tmp_path / "rec", src, labels=labels)
    (entry,) = R.list_recoveries(tmp_path / "rec", src)
    np.testing.assert_array_equal(entry.load(), labels)


def test_nothing_annotated_removes_the_entry(tmp_path):
    src = tmp_path / "scan.nii.gz"
    _save(tmp_path, src)
    assert R.list_recoveries(tmp_path, src)
    # background-only marks alone are work worth keeping
    assert _save(tmp_path, src, labels=np.zeros((3, 5, 16, 16), np.uint8)) is not None
    assert _save(tmp_path, src, labels=np.zeros((3, 5, 16, 16), np.uint8), background=()) is None
    assert R.list_recoveries(tmp_path, src) == []
    assert not R.image_folder(tmp_path, src).exists()


def test_unreadable_entries_and_killed_writes_are_skipped(tmp_path):
    src = tmp_path / "scan.nii.gz"
    good = _save(tmp_path, src, key="good")
    folder = good.parent
    (folder / "junk.npz").write_bytes(b"not a zip")
    np.savez(folder / "foreign.npz", labels=np.zeros((2, 2, 2)))
    # the temporary file of a write killed mid-way (a process that is gone)
    dead = folder / f".k2.npz.{R.host_name()}.999999999.0123abcd.tmp"
    dead.write_bytes(b"half")
    assert [e.key for e in R.list_recoveries(tmp_path, src)] == ["good"]
    assert not dead.exists()
    with pytest.raises(R.RecoveryError, match="junk.npz"):
        R.read_recovery(folder / "junk.npz")


def test_bad_input_is_one_sentence(tmp_path):
    with pytest.raises(R.RecoveryError, match="3D or 4D"):
        _save(tmp_path, tmp_path / "a.nii", labels=np.zeros((4, 4), np.uint8))
    with pytest.raises(R.RecoveryError, match="not a recovery key"):
        R.entry_path(tmp_path, tmp_path / "a.nii", "../escape")


def test_default_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(R.RECOVERY_ENV, str(tmp_path / "here"))
    assert R.default_folder() == tmp_path / "here"
    monkeypatch.delenv(R.RECOVERY_ENV)
    assert R.default_folder().name == "recovery"
    assert "napari-pix2rep" in str(R.default_folder())


def test_a_normal_save_forgets_the_autosave(tmp_path):
    """Saving the layer with the plugin's writer removes its entry (and only its own)."""
    img = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 5, 3), np.float32), np.eye(4)), img)
    vol = read_nifti(img)
    meta = role_metadata(volume_metadata(vol), ANNOTATION, "scan", ["background", "LV"])
    meta[R.RECOVERY_KEY] = R.entry_metadata(tmp_path / "rec", "mine")
    meta[BACKGROUND_KEY] = [7]
    _save(tmp_path / "rec", img, key="mine")
    _save(tmp_path / "rec", img, key="other")
    assert R.forget_saved({}, str(img)) is False
    (written,) = write_labels(str(tmp_path / "saved.nii.gz"), _painted(), {"metadata": meta})
    assert os.path.exists(written)
    assert [e.key for e in R.list_recoveries(tmp_path / "rec", img)] == ["other"]


def test_a_pending_autosave_of_an_edit_before_a_normal_save_does_not_bring_it_back(tmp_path):
    import time

    labels = np.zeros((2, 8, 8), np.uint8)
    labels[1, 2:4, 2:4] = 3
    folder, source = tmp_path / "rec", tmp_path / "scan.nii.gz"
    kw = {"image_name": "scan", "layer_name": "scan annotations", "classes": ("bg", "LV")}
    edited = time.time()
    path = R.save_recovery(folder, source, "k1", labels, edited_at=edited, **kw)
    assert path is not None and path.is_file()
    meta = {R.RECOVERY_KEY: R.entry_metadata(folder, "k1")}
    assert R.forget_saved(meta, str(source)) and not path.exists()
    # the autosave timer fires after the save with the labels of the earlier edit
    assert R.save_recovery(folder, source, "k1", labels, edited_at=edited, **kw) is None
    assert not R.list_recoveries(folder, source)
    # a new edit after the save is autosaved again
    again = R.save_recovery(folder, source, "k1", labels, edited_at=time.time() + 1, **kw)
    assert again is not None and again.is_file()
