"""DICOM through the commands and the npe2 reader: convert, train / predict / pretrain /
measure on a DICOM cine, the error sentences, and a folder opened as a 4D layer."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from dicom_series import unique_values, write_series

from napari_pix2rep._reader import get_reader
from napari_pix2rep._writer import write_labels
from napari_pix2rep.cli import main
from napari_pix2rep.evaluation.phantom import make_phantom
from napari_pix2rep.io import dicom_files
from napari_pix2rep.io.dicom import read_dicom
from napari_pix2rep.io.layer_meta import METADATA_KEY
from napari_pix2rep.io.nifti import read_nifti
from napari_pix2rep.io.nifti_write import write_nifti
from napari_pix2rep.measure.metrics import structure_volumes


@pytest.fixture(scope="module")
def cine(tmp_path_factory):
    """A 4D phantom (3 frames x 6 slices of 64 x 64) written as a DICOM series, with its truth
    as NIfTI on the converted grid."""
    root = tmp_path_factory.mktemp("dicom_cli")
    ph = make_phantom(n_slices=6, size=(64, 64), n_frames=3, seed=4)
    folder = root / "SCD_cine"
    write_series(
        folder,
        np.round(ph.image * 1000),
        pixel_spacing=ph.spacing[-2:],
        step_mm=ph.spacing[1],
        vendor="Siemens",
        description="cine_retro SAX",
        patient="Doe^Jane",
    )
    vol = read_dicom(folder)
    labels = write_nifti(root / "truth.nii.gz", ph.labels, vol, kind="labels")
    return {"root": root, "folder": folder, "phantom": ph, "labels": labels, "vol": vol}


def _err(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


def test_convert_writes_the_converted_geometry(cine, tmp_path, capsys):
    out = tmp_path / "cine.nii.gz"
    assert main(["convert", str(cine["folder"]), "--out", str(out)]) == 0
    line = capsys.readouterr().out
    assert "3 phases x 6 slices of 64 x 64 pixels" in line and "'cine_retro SAX'" in line
    img = nib.load(out)
    assert img.shape == (64, 64, 6, 3)
    np.testing.assert_array_equal(img.affine, cine["vol"].affine)
    np.testing.assert_array_equal(read_nifti(out).data, cine["vol"].data)
    # several files of one series (a shell glob) are one series
    files = sorted(str(p) for p in cine["folder"].iterdir())
    assert main(["convert", *files, "--out", str(tmp_path / "glob.nii.gz")]) == 0
    assert nib.load(tmp_path / "glob.nii.gz").shape == (64, 64, 6, 3)


def test_convert_errors_are_one_sentence(cine, tmp_path, capsys):
    other = tmp_path / "other"
    write_series(other, unique_values(2, 3, 6, 5), uid="1.2.9", number=12, skip={(1, 0)})
    out = tmp_path / "x.nii.gz"
    assert main(["convert", str(cine["folder"]), str(other), "--out", str(out)]) == 2
    err = _err(capsys)
    assert err.startswith("pix2rep convert: error: Found 2 DICOM series in the 2 inputs: ")
    assert "'cine_retro SAX' (18 files, series 7)" in err and "1.2.9" in err
    assert main(["convert", str(other), "--out", str(out)]) == 2
    assert "Phases are missing: slice 0 of 3" in _err(capsys)
    picked = tmp_path / "picked.nii.gz"
    argv = ["convert", str(cine["folder"]), str(other), "--series", "7", "--out", str(picked)]
    assert main(argv) == 0 and nib.load(picked).shape == (64, 64, 6, 3)
    assert main(["convert", str(cine["folder"]), "--out", str(tmp_path / "x.txt")]) == 2
    assert "must end with .nii or .nii.gz" in _err(capsys)
    assert main(["convert", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "does not exist" in _err(capsys)
    assert not out.exists()


def test_convert_series_option_picks_one(cine, tmp_path, capsys):
    folder = tmp_path / "study"
    write_series(folder, unique_values(1, 3, 6, 5), uid="1.2.7.1", number=3)
    write_series(folder, unique_values(2, 3, 6, 5, 1), uid="1.2.7.2", number=4, prefix="b")
    out = tmp_path / "b.nii.gz"
    assert main(["convert", str(folder), "--series", "1.2.7.2", "--out", str(out)]) == 0
    assert nib.load(out).shape == (5, 6, 3, 2)


def test_train_and_predict_on_a_dicom_folder(cine, tiny_backbone_file, tmp_path, capsys):
    seg = tmp_path / "seg.pt"
    args = ["--model", str(tiny_backbone_file), "--out", str(seg), "--device", "cpu"]
    argv = ["train", "--image", str(cine["folder"]), "--labels", cine["labels"], *args]
    assert main([*argv, "--steps", "20"]) == 0
    out_dir = tmp_path / "pred"
    files = sorted(cine["folder"].iterdir())
    # the folder and one of its files are the same series: one output name, refused first
    argv = ["predict", "--model", str(seg), str(cine["folder"]), str(files[0])]
    assert main([*argv, "--out-dir", str(out_dir), "--device", "cpu"]) == 2
    assert "Doe_Jane_cine_retro_SAX_seg.nii.gz" in capsys.readouterr().err
    argv = ["predict", "--model", str(seg), str(cine["folder"])]
    assert main([*argv, "--out-dir", str(out_dir), "--device", "cpu"]) == 0
    written = sorted(p.name for p in out_dir.iterdir())
    assert written == ["Doe_Jane_cine_retro_SAX_seg.nii.gz"]
    pred = nib.load(out_dir / written[0])
    assert pred.shape == (64, 64, 6, 3)
    np.testing.assert_array_equal(pred.affine, cine["vol"].affine)
    assert "error" not in capsys.readouterr().err


def test_pretrain_takes_a_folder_of_dicom_series(cine, tmp_path, capsys):
    out = tmp_path / "bb.pt"
    argv = ["pretrain", str(cine["root"]), "--exclude", "*.nii.gz", "--preset", "tiny"]
    assert main([*argv, "--steps", "1", "--batch-size", "2", "--out", str(out)]) == 0
    assert "1 file (skipped: 1 matching --exclude), 18 slices" in capsys.readouterr().out
    assert out.is_file()


def test_measure_chooses_ed_es_from_the_lv_curve(cine, tmp_path, capsys):
    ph = cine["phantom"]
    seg = cine["labels"]
    assert main(["measure", seg]) == 0
    text = capsys.readouterr().out
    assert "ED frame 0, ES frame 1 (largest and smallest LV volume)" in text
    assert main(["measure", seg, "--ed", "2", "--es", "1", "--json"]) == 0
    import json

    m = json.loads(capsys.readouterr().out)["measures"]
    spatial = cine["vol"].spacing[1:]
    assert (m["ed_frame"], m["es_frame"]) == (2, 1)
    assert m["LV_EDV"] == pytest.approx(structure_volumes(ph.labels[2], spatial)["LV_ml"])
    assert main(["measure", seg, "--ed", "2", "--es", "1"]) == 0
    assert "ED frame 2, ES frame 1 (given)" in capsys.readouterr().out
    assert main(["measure", seg, "--ed", "5"]) == 2
    assert "The ED frame 5 is not among the frames 0 to 2." in _err(capsys)
    assert main(["measure", str(cine["folder"])]) == 2
    assert "is a DICOM image series, not a segmentation" in _err(capsys)


def test_reader_opens_a_dicom_folder_as_a_4d_layer(cine, tmp_path):
    reader = get_reader(str(cine["folder"]))
    assert reader is not None
    ((data, kwargs, kind),) = reader(str(cine["folder"]))
    vol = cine["vol"]
    assert kind == "image" and data.shape == (3, 6, 64, 64)
    assert kwargs["name"] == "Doe_Jane_cine_retro_SAX"
    assert kwargs["scale"] == pytest.approx(vol.spacing)
    assert kwargs["scale"][1:] == pytest.approx((10.0, 1.5, 1.5), abs=1e-4)
    np.testing.assert_array_equal(kwargs["metadata"][METADATA_KEY]["affine"], vol.affine)
    # a labels layer made for it exports with the converted affine
    (out,) = write_labels(
        str(tmp_path / "lab.nii.gz"),
        np.zeros(data.shape, np.uint8),
        {"metadata": kwargs["metadata"], "scale": kwargs["scale"]},
    )
    np.testing.assert_array_equal(nib.load(out).affine, vol.affine)
    # one file of the series opens the series too
    one = next(cine["folder"].iterdir())
    assert get_reader(str(one))(str(one))[0][0].shape == (3, 6, 64, 64)


def test_reader_declines_folders_without_dicom_quickly(tmp_path, monkeypatch):
    folder = tmp_path / "notes"
    folder.mkdir()
    for i in range(200):
        (folder / f"{i:03d}.txt").write_text("not an image")
    opened = []
    real = dicom_files.is_dicom_file
    monkeypatch.setattr(dicom_files, "is_dicom_file", lambda p: opened.append(p) or real(p))
    assert get_reader(str(folder)) is None
    assert 0 < len(opened) <= 16
    assert get_reader(str(tmp_path / "missing")) is None
    assert get_reader([str(folder), str(tmp_path / "a.nii.gz")]) is None


def test_reader_error_is_one_sentence(tmp_path):
    write_series(tmp_path / "s", unique_values(2, 3, 6, 5), skip={(0, 1)})
    reader = get_reader(str(tmp_path / "s"))
    with pytest.raises(ValueError, match=r"^Phases are missing: slice 1 of 3 .*\.$"):
        reader(str(tmp_path / "s"))


def test_find_training_images_lists_each_series_once(cine, tmp_path):
    from napari_pix2rep.io.datafiles import find_training_images

    found = find_training_images([cine["root"]], exclude=["*.nii.gz"]).images
    assert len(found) == 1 and Path(found[0]).parent == cine["folder"]


def test_reader_reads_dicom_files_dropped_together_once(cine):
    files = sorted(str(p) for p in cine["folder"].iterdir())[:5]
    layers = get_reader(files)(files)
    assert len(layers) == 1 and layers[0][0].shape == (3, 6, 64, 64)


def test_convert_checks_its_output_before_reading_the_series(cine, tmp_path, monkeypatch, capsys):
    import napari_pix2rep.io.dicom as dicom

    def no_work(*args, **kwargs):
        raise AssertionError("the series was read before the output was checked")

    monkeypatch.setattr(dicom, "read_dicom", no_work)
    assert main(["convert", str(cine["folder"]), "--out", str(tmp_path)]) == 2
    assert "is a folder; give a file name" in capsys.readouterr().err
