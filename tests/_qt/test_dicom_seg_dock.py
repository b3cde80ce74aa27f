"""The dock's *Export DICOM SEG…*: enabled only for an image read from DICOM, writes one
SEG per segmented phase in a worker thread, each frame on its source instance."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from dicom_series import rotation, unique_values, write_series
from pydicom.uid import generate_uid

from napari_pix2rep.io.nifti_write import write_nifti

pytest.importorskip("qtpy")

PLUGIN = "napari-pix2rep"


def test_export_dicom_seg_from_the_dock(dock, tmp_path, qtbot, notes):
    from napari_pix2rep._qt import layers as L

    folder = tmp_path / "series"
    written = write_series(
        folder,
        unique_values(2, 3, 12, 10),
        orientation=rotation(2),
        overrides={"FrameOfReferenceUID": generate_uid()},
    )
    viewer, widget = dock
    panel = widget.segment_panel
    button = panel.dicom_export.button
    (image,) = viewer.open(str(folder), plugin=PLUGIN)
    panel.image_combo.setCurrentText(image.name)
    assert button.isEnabled() and button.text() == "Export DICOM SEG…"
    # beside Export NIfTI…, in the same row
    grid = panel.export_button.parentWidget().layout()
    rows = [grid.getItemPosition(grid.indexOf(b))[0] for b in (panel.export_button, button)]
    assert rows[0] == rows[1]

    assert not panel.dicom_export.export(str(tmp_path / "out"))  # no segmentation yet
    assert notes[-1] == ("error", "No segmentation to export: press Segment first.")
    notes.clear()

    seg = L.add_labels_for(viewer, image, L.SEGMENTATION, ("background", "RV", "MYO", "LV"))
    labels = np.zeros(image.data.shape, np.uint8)
    labels[1, 1, 3:8, 2:6] = 3  # LV on one slice of phase 1 only
    labels[1, 2, 4:6, 2:4] = 1
    seg.data = labels
    out = tmp_path / "out"
    assert panel.dicom_export.export(str(out))
    assert not button.isEnabled()  # while the export runs
    qtbot.waitUntil(lambda: panel.dicom_export.worker is None, timeout=30_000)
    assert button.isEnabled()
    assert not [m for s, m in notes if s == "error"], notes
    assert "Wrote 1 DICOM SEG file" in notes[-1][1] and "phase 1" in notes[-1][1]

    (path,) = out.glob("*.dcm")
    sources = {}
    for w in written:
        sop = pydicom.dcmread(w.path, stop_before_pixels=True).SOPInstanceUID
        sources[str(sop)] = (w.t, w.z, w.ipp)
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array.reshape(int(ds.NumberOfFrames), 12, 10)
    found = []
    for k, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        ref = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        t, z, ipp = sources[str(ref)]
        number = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        position = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        np.testing.assert_allclose(position, ipp, atol=1e-3)
        np.testing.assert_array_equal(pixels[k], labels[t, z] == number)
        found.append((t, z, number))
    assert sorted(found) == [(1, 1, 3), (1, 2, 1)]
    # no prediction of this layer is known here: the user's work, SEMIAUTOMATIC
    assert {s.SegmentAlgorithmType for s in ds.SegmentSequence} == {"SEMIAUTOMATIC"}

    # a NIfTI image (no DICOM series behind it): the action is disabled
    nifti = write_nifti(tmp_path / "cine.nii.gz", np.asarray(image.data), image.metadata,
                        kind="image")  # fmt: skip
    (other,) = viewer.open(nifti, plugin=PLUGIN)
    panel.image_combo.setCurrentText(other.name)
    assert not button.isEnabled()
