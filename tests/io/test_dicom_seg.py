"""DICOM SEG export (napari_pix2rep.io.dicom_seg and ``pix2rep dicom-seg``): synthetic cines
written with pydicom, converted, segmented, exported and read back with pydicom frame by
frame (source instance, plane, pixels); an untidy series; the Sunnybrook example against
its expert contours (``realdata``); the error sentences, with no file left behind."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from dicom_series import rotation, unique_values, write_series
from pydicom.uid import generate_uid

from napari_pix2rep import __version__
from napari_pix2rep.cli import main
from napari_pix2rep.io import dicom_seg
from napari_pix2rep.io.dicom import read_dicom
from napari_pix2rep.io.dicom_seg import DicomSegError, segment_codes, write_dicom_seg
from napari_pix2rep.io.nifti import Volume, read_nifti
from napari_pix2rep.io.nifti_write import write_nifti
from napari_pix2rep.io.outputs import OutputError

REPO = Path(__file__).resolve().parents[2]
SUNNYBROOK = (REPO / "../shared/data/sunnybrook_dicom").resolve()
NT, NZ, ROWS, COLS = 3, 4, 12, 10
CODES = {1: "53085002", 2: "49848007", 3: "87878005"}  # RV, LV myocardium, LV (cavity)


def _labels(nt: int = NT, seed: int = 0) -> np.ndarray:
    """``(t, z, y, x)`` labels 0-3: frame 1 and slice 0 empty, random classes elsewhere."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, size=(nt, NZ, ROWS, COLS)).astype(np.uint8)
    labels[:, 0] = 0
    if nt > 1:
        labels[1] = 0
    labels[0, 2] = np.where(labels[0, 2] == 2, 0, labels[0, 2])  # no MYO on one slice
    return labels


@pytest.fixture(scope="module")
def cine(tmp_path_factory):
    """An oblique 3-phase, 4-slice series, converted by ``pix2rep convert``, with labels
    written on the converted grid; ``files`` maps SOPInstanceUID -> (t, z, path)."""
    root = tmp_path_factory.mktemp("dicom_seg")
    folder = root / "series"
    written = write_series(
        folder,
        unique_values(NT, NZ, ROWS, COLS),
        orientation=rotation(3),
        overrides={"FrameOfReferenceUID": generate_uid(), "StudyDate": "20240131"},
    )
    assert main(["convert", str(folder), "--out", str(root / "cine.nii.gz")]) == 0
    image = read_nifti(root / "cine.nii.gz")
    labels = _labels()
    seg = write_nifti(root / "seg.nii.gz", labels, image, kind="labels")
    files = {
        str(pydicom.dcmread(w.path, stop_before_pixels=True).SOPInstanceUID): (w.t, w.z, w.path)
        for w in written
    }
    return {"root": root, "folder": folder, "seg": Path(seg), "labels": labels, "files": files}


def check_seg(path: Path, expected: np.ndarray, t: int, files: dict) -> set[int]:
    """Read one SEG back: every frame refers to the source image ``(t, z)`` it is drawn
    on, has its plane position and orientation, and holds ``expected[z] == segment``;
    no slice with a mask is missing and no empty frame is stored. Returns the segments
    that have frames."""
    seg = pydicom.dcmread(path)
    assert seg.Modality == "SEG" and seg.SegmentationType == "BINARY"
    pixels = seg.pixel_array.reshape(int(seg.NumberOfFrames), seg.Rows, seg.Columns)
    shared = seg.SharedFunctionalGroupsSequence[0]
    orientation = [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient]
    seen = set()
    for k, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        ref = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        src_t, z, src_path = files[str(ref)]
        assert src_t == t, f"{path.name} frame {k} refers to phase {src_t}"
        src = pydicom.dcmread(src_path, stop_before_pixels=True)
        position = item.PlanePositionSequence[0].ImagePositionPatient
        np.testing.assert_allclose(
            [float(v) for v in position], [float(v) for v in src.ImagePositionPatient]
        )
        np.testing.assert_allclose(
            orientation, [float(v) for v in src.ImageOrientationPatient], atol=1e-4
        )
        number = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        np.testing.assert_array_equal(pixels[k], expected[z] == number)
        assert pixels[k].any(), "an empty frame was stored"
        seen.add((z, number))
    present = {(z, n) for z in range(len(expected)) for n in np.unique(expected[z]) if n}
    assert seen == present
    return {n for _, n in seen}


def test_cine_gives_one_seg_per_segmented_phase(cine, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["dicom-seg", str(cine["seg"]), "--series", str(cine["folder"]), "--out-dir", str(out)]
    assert main([*args, "--model", "segmenter.pt"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    paths = sorted(out.glob("*.dcm"))
    assert [p.name for p in paths] == ["Test_Patient_CINE_SAX_seg_frame00.dcm",
                                       "Test_Patient_CINE_SAX_seg_frame02.dcm"]  # fmt: skip
    assert lines == [f"{paths[0]}: phase 0", f"{paths[1]}: phase 2"]
    source = pydicom.dcmread(next(iter(cine["files"].values()))[2], stop_before_pixels=True)
    series_uids = set()
    for path, t in zip(paths, (0, 2)):
        assert check_seg(path, cine["labels"][t], t, cine["files"]) == {1, 2, 3}
        seg = pydicom.dcmread(path, stop_before_pixels=True)
        series_uids.add(seg.SeriesInstanceUID)
        assert seg.StudyInstanceUID == source.StudyInstanceUID
        assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID
        assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
        assert len(seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence) == NZ
        assert seg.InstanceNumber == t + 1 and seg.StudyDate == "20240131"
        assert [s.SegmentLabel for s in seg.SegmentSequence] == ["RV", "MYO", "LV"]
        for s in seg.SegmentSequence:
            assert s.SegmentedPropertyTypeCodeSequence[0].CodeValue == CODES[s.SegmentNumber]
            assert s.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator == "SCT"
            assert s.SegmentAlgorithmType == "AUTOMATIC"
            alg = s.SegmentationAlgorithmIdentificationSequence[0]
            assert alg.AlgorithmName == "napari-pix2rep" and alg.AlgorithmVersion == __version__
            assert "segmenter.pt" in alg.AlgorithmParameters
    assert len(series_uids) == 1  # one SEG series per export


@pytest.mark.filterwarnings("ignore:Invalid value for VR DA")  # the test writes them
def test_untidy_series_is_normalised_and_said(tmp_path):
    """Invalid dates, a FrameOfReferenceUID per instance, orientations differing in the
    fifth decimal, no StudyID: written anyway, every change in the notes, files intact."""
    folder = tmp_path / "untidy"
    written = write_series(folder, unique_values(1, NZ, ROWS, COLS), orientation=rotation(5))
    for k, w in enumerate(written):
        ds = pydicom.dcmread(w.path)
        ds.StudyDate, ds.PatientBirthDate = "20120000", "00000000"
        ds.FrameOfReferenceUID = generate_uid()
        iop = [float(v) for v in ds.ImageOrientationPatient]
        ds.ImageOrientationPatient = [f"{v + 2e-5 * (k % 2):.8f}" for v in iop]
        ds.save_as(w.path)
    before = {w.path: w.path.read_bytes() for w in written}
    vol = read_dicom(folder)
    labels = _labels(nt=1)[0]
    result = write_dicom_seg(
        Volume(labels, vol.spacing, vol.header, vol.affine), folder, tmp_path / "out",
        edited=True,
    )  # fmt: skip
    notes = " ".join(result.notes)
    for said in ("StudyDate '20120000'", "PatientBirthDate '00000000'", "StudyID"):
        assert said in notes, notes
    assert f"{NZ} different FrameOfReferenceUIDs" in notes
    assert "ImageOrientationPatient differs" in notes and "2e-05" in notes
    assert result.frames == [0] and [p.name for p in result.paths] == [
        "Test_Patient_CINE_SAX_seg.dcm"
    ]
    files = {}
    for w in written:
        ds = pydicom.dcmread(w.path, stop_before_pixels=True)
        files[str(ds.SOPInstanceUID)] = (0, w.z, w.path)
    assert check_seg(result.paths[0], labels, 0, files) == {1, 2, 3}
    seg = pydicom.dcmread(result.paths[0], stop_before_pixels=True)
    assert seg.StudyDate == "" and seg.PatientBirthDate == ""
    assert all(s.SegmentAlgorithmType == "SEMIAUTOMATIC" for s in seg.SegmentSequence)
    assert seg.FrameOfReferenceUID in {
        str(pydicom.dcmread(w.path, stop_before_pixels=True).FrameOfReferenceUID) for w in written
    }
    assert {w.path: w.path.read_bytes() for w in written} == before  # sources untouched


def test_3d_mask_of_one_phase(cine, tmp_path):
    vol = read_dicom(cine["folder"])
    one = cine["labels"][2]
    mask = Volume(one, vol.spacing[1:], vol.header, vol.affine)
    result = write_dicom_seg(mask, cine["folder"], tmp_path, frame=2)
    assert result.frames == [2]
    check_seg(result.paths[0], one, 2, cine["files"])
    with pytest.raises(DicomSegError, match="say which phase"):
        write_dicom_seg(mask, cine["folder"], tmp_path / "none")
    with pytest.raises(DicomSegError, match="does not exist"):
        write_dicom_seg(mask, cine["folder"], tmp_path / "none", frame=3)
    assert not (tmp_path / "none").exists()


def test_overwrite_leaves_no_frame_of_the_earlier_export(cine, tmp_path):
    vol = read_dicom(cine["folder"])
    every = Volume(_labels(seed=1), vol.spacing, vol.header, vol.affine)
    every.data[1] = cine["labels"][0]  # all three phases segmented
    first = write_dicom_seg(every, cine["folder"], tmp_path)
    assert first.frames == [0, 1, 2]
    one_phase = Volume(cine["labels"][2], vol.spacing[1:], vol.header, vol.affine)
    write_dicom_seg(one_phase, cine["folder"], tmp_path, frame=2, overwrite=True)
    assert len(list(tmp_path.glob("*.dcm"))) == 3  # one phase replaced, the others stay
    again = write_dicom_seg(
        Volume(cine["labels"], vol.spacing, vol.header, vol.affine),
        cine["folder"],
        tmp_path,
        overwrite=True,
    )
    assert sorted(tmp_path.glob("*.dcm")) == sorted(again.paths)  # frame 1 is empty now
    assert any("frame01.dcm" in n and "empty" in n for n in again.notes)
    uids = {pydicom.dcmread(p, stop_before_pixels=True).SeriesInstanceUID for p in again.paths}
    assert uids == {again.series_uid}


def test_custom_classes_are_coded_as_tissue(cine, tmp_path):
    classes = ("background", "right ventricle", "scar", "LV")
    mask = read_nifti(cine["seg"], kind="labels")
    result = write_dicom_seg(mask, cine["folder"], tmp_path, classes=classes)
    assert "Class 'scar' has no standard anatomic code" in " ".join(result.notes)
    seg = pydicom.dcmread(result.paths[0], stop_before_pixels=True)
    types = [s.SegmentedPropertyTypeCodeSequence[0].CodeValue for s in seg.SegmentSequence]
    assert types == ["53085002", "85756007", "87878005"]
    assert segment_codes("Myo")[1] == ("49848007", "Myocardium of left ventricle")


# --------------------------------------------------------------------------- errors
def _err(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


def test_mask_on_another_grid_is_one_sentence(cine, tmp_path, capsys):
    image = read_nifti(cine["root"] / "cine.nii.gz")
    cropped = str(tmp_path / "crop.nii.gz")  # three of the four slices
    nib.save(nib.Nifti1Image(cine["labels"][:, :3].T, image.affine), cropped)
    out = tmp_path / "out"
    cmd = ["dicom-seg", cropped, "--series", str(cine["folder"]), "--out-dir", str(out)]
    assert main(cmd) != 0
    err = _err(capsys)
    assert "The mask is 3 x 3 x 12 x 10 but series" in err and "not on the grid" in err
    assert not out.exists()
    nested = tmp_path / "new" / "deeper"  # folders made for the export go again too
    assert main([*cmd[:-1], str(nested)]) != 0 and "not on the grid" in _err(capsys)
    assert not (tmp_path / "new").exists()


def test_mismatching_series_is_one_sentence(cine, tmp_path, capsys):
    """Same matrix, another position: the affine tells them apart."""
    other = tmp_path / "other"
    write_series(other, unique_values(NT, NZ, ROWS, COLS), orientation=rotation(3),
                 origin=(-100.0, 80.25, 30.0))  # fmt: skip
    out = tmp_path / "out"
    args = ["dicom-seg", str(cine["seg"]), "--series", str(other), "--out-dir", str(out)]
    assert main(args) != 0
    err = _err(capsys)
    assert "affine differs from series" in err and "20.5 mm" in err
    assert not out.exists()


def test_labels_without_a_class_and_empty_masks(cine, tmp_path):
    vol = read_dicom(cine["folder"])
    bad = cine["labels"].copy()
    bad[0, 1, 0, 0] = 7
    with pytest.raises(DicomSegError, match="label 7, which is none of the classes"):
        write_dicom_seg(Volume(bad, vol.spacing, vol.header, vol.affine), cine["folder"], tmp_path)
    empty = np.zeros_like(bad)
    with pytest.raises(DicomSegError, match="The mask is empty"):
        write_dicom_seg(
            Volume(empty, vol.spacing, vol.header, vol.affine), cine["folder"], tmp_path
        )
    assert not list(tmp_path.iterdir())


def test_unwritable_output_leaves_no_file(cine, tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    cmd = ["dicom-seg", str(cine["seg"]), "--series", str(cine["folder"])]
    assert main([*cmd, "--out-dir", str(blocker / "out")]) != 0
    assert "is a file, not a folder" in _err(capsys)
    # the second file fails (disk full): the first, already written, is removed again
    calls = []
    real = dicom_seg.atomic_write

    def failing(path, write, suffix=""):
        calls.append(path)
        if len(calls) == 2:
            raise OutputError(f"Could not write {path}: the disk is full; nothing was written.")
        return real(path, write, suffix)

    monkeypatch.setattr(dicom_seg, "atomic_write", failing)
    out = tmp_path / "full"
    out.mkdir()
    assert main([*cmd, "--out-dir", str(out)]) != 0
    assert "the disk is full" in _err(capsys)
    assert len(calls) == 2 and not list(out.iterdir())


# --------------------------------------------------------------------------- real data
@pytest.fixture(scope="module")
def sunnybrook() -> Path:
    series = SUNNYBROOK / "SCD0000101"
    if not series.is_dir():
        pytest.skip(f"Sunnybrook series not found at {series} (real-data tests need ../shared)")
    return series


@pytest.mark.realdata
@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # the series' own UIDs
def test_sunnybrook_seg_sits_on_the_contoured_instances(sunnybrook, tmp_path):
    """The expert contours, placed by napari_pix2rep.io.sunnybrook, exported as SEG: every
    SEG frame refers to the file ``NNNN.dcm`` its contour file names, at that file's
    plane, with the contour's pixels; the untidy headers are normalised and said."""
    from napari_pix2rep.io.sunnybrook import LV, contoured_slices, polygon_mask

    vol = read_dicom(sunnybrook)
    mask = np.zeros(vol.shape, np.uint8)
    for c in contoured_slices(sunnybrook, vol):
        mask[c.frame, c.slice] = c.labels
    result = write_dicom_seg(
        Volume(mask, vol.spacing, vol.header, vol.affine), sunnybrook, tmp_path, model="expert"
    )
    assert result.frames == [7, 18]  # ES and ED
    notes = " ".join(result.notes)
    assert "StudyDate '20120000'" in notes and "different FrameOfReferenceUIDs" in notes
    by_uid = {}
    for f in sunnybrook.glob("*.dcm"):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        by_uid[str(ds.SOPInstanceUID)] = (int(ds.InstanceNumber), ds)
    contours = sunnybrook.parent / "SCD0000101_contours" / "i-contours"
    cavities = {}
    for path in result.paths:
        seg = pydicom.dcmread(path)
        pixels = seg.pixel_array.reshape(int(seg.NumberOfFrames), 256, 256)
        orientation = seg.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0]
        for k, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
            ref = item.DerivationImageSequence[0].SourceImageSequence[0]
            number, src = by_uid[str(ref.ReferencedSOPInstanceUID)]
            position = item.PlanePositionSequence[0].ImagePositionPatient
            np.testing.assert_allclose(
                [float(v) for v in position], [float(v) for v in src.ImagePositionPatient]
            )
            np.testing.assert_allclose(
                [float(v) for v in orientation.ImageOrientationPatient],
                [float(v) for v in src.ImageOrientationPatient],
                atol=1e-4,
            )
            if int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber) == LV:
                cavities[number] = pixels[k]
    assert len(cavities) == 18
    for number, cavity in cavities.items():
        points = np.loadtxt(contours / f"IM-0001-{number:04d}-icontour-manual.txt")
        np.testing.assert_array_equal(cavity, polygon_mask(points, (256, 256)))


def test_importing_the_export_imports_neither_torch_nor_qt_nor_highdicom():
    import subprocess
    import sys

    code = (
        "import sys, napari_pix2rep.io.dicom_seg, napari_pix2rep.cli.dicom_seg; "
        "print(sorted(m for m in ('torch', 'qtpy', 'highdicom') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
