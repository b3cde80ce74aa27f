"""Issue 23: 13 ways user data could be overwritten or a wrong number printed silently,
each refused, warned about or handled right. Synthetic DICOM (pydicom) and NIfTI (nibabel)
made in the test; no real data."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_series import unique_values, write_series

from napari_pix2rep._reader import read_layers
from napari_pix2rep.annotate.annotations import AnnotationError, read_background_slices
from napari_pix2rep.cli import main
from napari_pix2rep.cli.segmentation import predict_targets
from napari_pix2rep.evaluation.phantom import make_phantom
from napari_pix2rep.io import dicom
from napari_pix2rep.io.dicom import DicomError, read_dicom
from napari_pix2rep.io.nifti import label_classes, read_nifti
from napari_pix2rep.io.nifti_write import write_nifti
from napari_pix2rep.io.outputs import OutputError, check_outputs
from napari_pix2rep.measure.metrics import segmentation_warnings
from napari_pix2rep.segment.localise import region_from_motion

SPACING = (8.0, 1.5, 1.5)


def _err(capsys) -> str:
    """stderr of the last command: one line, no traceback."""
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    return err


def _image(path: Path, shape=(4, 24, 24), seed: int = 0) -> Path:
    data = np.random.default_rng(seed).random(shape).astype(np.float32)
    return Path(write_nifti(path, data, kind="image", spacing=SPACING[-len(shape) :]))


def _labels(path: Path, data: np.ndarray, spacing=SPACING, classes=None) -> Path:
    return Path(write_nifti(path, data.astype(np.uint8), spacing=spacing, classes=classes))


def _segmenter(path: Path, classes=("background", "RV", "MYO", "LV"), favour: int = 0) -> Path:
    """An untrained tiny segmenter whose head says ``favour`` everywhere."""
    import torch

    from napari_pix2rep.model.nets.unet import UNet, preset
    from napari_pix2rep.model.segmenter import Segmenter

    seg = Segmenter(UNet(preset("tiny")), classes)
    with torch.no_grad():
        seg.head.conv.weight.zero_()
        seg.head.conv.bias.zero_()
        seg.head.conv.bias[favour] = 10.0
    return seg.save(path)


# -- the one rule: outputs against inputs and existing files ----------------------------
def test_the_rule_refuses_inputs_links_folder_files_duplicates_and_existing(tmp_path):
    img = _image(tmp_path / "img.nii.gz")
    (tmp_path / "link.nii.gz").symlink_to(img)
    os.link(img, tmp_path / "hard.nii.gz")
    for out in (
        img,
        tmp_path / "link.nii.gz",
        tmp_path / "hard.nii.gz",
        tmp_path / "x/../img.nii.gz",
    ):
        with pytest.raises(OutputError, match="is an input and also the output"):
            check_outputs([(out, "--out")], [img], overwrite=True)
    # a file the command reads from an input folder (a DICOM file there, by default)
    write_series(tmp_path / "dcm", unique_values(1, 2, 4, 4))
    some = sorted((tmp_path / "dcm").iterdir())[0]
    with pytest.raises(OutputError, match="read from the input"):
        check_outputs([(some, "--out")], [tmp_path / "dcm"], overwrite=True)
    with pytest.raises(OutputError, match="read from the input"):  # a file stands for its folder
        check_outputs([(some, "--out")], [sorted((tmp_path / "dcm").iterdir())[1]], overwrite=True)
    new = tmp_path / "new.nii.gz"
    with pytest.raises(OutputError, match="same file"):
        check_outputs([(new, "--out-dir"), (new, "--out-dir")], [img], overwrite=False)
    with pytest.raises(OutputError, match="already exists.*--overwrite"):
        check_outputs([(img, "--out-dir")], [], overwrite=False)
    check_outputs([(img, "--out")], [], overwrite=True)  # named explicitly: replaced
    check_outputs([(new, "--out")], [img, None, tmp_path / "dcm"], overwrite=False)


# -- 1: train / pretrain --out naming one of their inputs -------------------------------
def test_1_train_and_pretrain_never_replace_an_input(tmp_path, capsys):
    img = _image(tmp_path / "img.nii.gz")
    lab = _labels(tmp_path / "lab.nii.gz", np.zeros((4, 24, 24)))
    before = {p: p.read_bytes() for p in (img, lab)}
    (tmp_path / "data").mkdir()
    inner = _image(tmp_path / "data" / "case.nii.gz", seed=1)
    bb = tmp_path / "bb.pt"
    bb.write_bytes(b"weights")
    train = ["train", "--image", str(img), "--labels", str(lab), "--model", str(bb)]
    for out in (img, lab, bb):
        assert main([*train, "--out", str(out)]) == 2
        assert "is an input and also the output" in _err(capsys)
    assert main(["pretrain", str(img), "--out", str(img)]) == 2
    assert "is an input and also the output" in _err(capsys)
    assert main(["pretrain", str(tmp_path / "data"), "--out", str(inner)]) == 2
    assert "read from the input" in _err(capsys)
    assert main(["pretrain", str(img), "--init", str(bb), "--out", str(bb)]) == 2
    assert "is an input and also the output" in _err(capsys)
    # --resume X --out X continues the run in place: not refused by the rule
    assert main(["pretrain", str(img), "--resume", str(bb), "--out", str(bb)]) == 2
    assert "is an input and also the output" not in _err(capsys)
    assert {p: p.read_bytes() for p in (img, lab)} == before and bb.read_bytes() == b"weights"


# -- 2: predict and an existing <name>_seg.nii.gz ---------------------------------------
def test_2_predict_keeps_an_existing_mask_unless_overwrite(tmp_path, capsys):
    img = _image(tmp_path / "heart.nii.gz", shape=(2, 32, 32))
    out = tmp_path / "out"
    out.mkdir()
    mine = _labels(out / "heart_seg.nii.gz", np.ones((2, 32, 32)), spacing=SPACING[-3:])
    drawn = mine.read_bytes()
    model = _segmenter(tmp_path / "seg.pt")
    argv = ["predict", "--model", str(model), str(img), "--out-dir", str(out), "--no-localise"]
    assert main(argv) == 2
    err = _err(capsys)
    assert "heart_seg.nii.gz already exists" in err and "--overwrite" in err
    assert mine.read_bytes() == drawn
    assert main([*argv, "--overwrite"]) == 0
    assert mine.read_bytes() != drawn
    # an output that is an input (heart's target is the other image) is refused even so
    other = _image(out / "heart.nii.gz", shape=(2, 32, 32))
    argv = ["predict", "--model", str(model), str(other), str(mine), "--out-dir", str(out)]
    assert main([*argv, "--overwrite"]) == 2
    assert "is an input and also the output" in _err(capsys)


# -- 3: dir/*.dcm over two series --------------------------------------------------------
def test_3_files_of_two_series_in_one_folder_are_listed_not_one_picked(tmp_path, capsys):
    folder = tmp_path / "mixed"
    write_series(folder, unique_values(2, 2, 4, 4), prefix="a_", number=3, description="CINE")
    write_series(
        folder, unique_values(2, 2, 4, 4, seed=1), prefix="b_", number=4, description="T1"
    )
    files = sorted(str(p) for p in folder.iterdir())
    assert main(["convert", *files, "--out", str(tmp_path / "x.nii.gz")]) == 2
    err = _err(capsys)
    assert "Found 2 DICOM series" in err and "'CINE'" in err and "'T1'" in err
    assert not (tmp_path / "x.nii.gz").exists()
    with pytest.raises(DicomError, match="Found 2 DICOM series"):
        read_layers(files)  # napari's reader
    # the files of one series still are that series
    a = [f for f in files if Path(f).name.startswith("a_")]
    assert read_dicom(a).series.number == "3"


# -- 4: measure and the class order ------------------------------------------------------
def _blobs(shape=(4, 20, 20)) -> np.ndarray:
    seg = np.zeros(shape, np.uint8)
    seg[:, 2:6, 2:6] = 1  # 64 voxels
    seg[:, 8:14, 8:14] = 2  # 144 voxels
    return seg


def test_4_measure_reads_the_classes_of_the_segmentation(tmp_path, capsys):
    voxel_ml = np.prod(SPACING) / 1000.0
    path = _labels(tmp_path / "seg.nii.gz", _blobs(), classes=("background", "MYO", "LV"))
    assert main(["measure", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    v = out["volumes"]
    assert v["MYO_ml"] == pytest.approx(64 * voxel_ml) and v["LV_ml"] == pytest.approx(
        144 * voxel_ml
    )
    assert v["RV_ml"] is None and out["classes"] == ["background", "MYO", "LV"]
    # --classes wins over the header; without either, the ACDC convention
    assert main(["measure", str(path), "--json", "--classes", "LV,MYO"]) == 0
    assert json.loads(capsys.readouterr().out)["volumes"]["LV_ml"] == pytest.approx(64 * voxel_ml)
    plain = _labels(tmp_path / "plain.nii.gz", _blobs())
    assert main(["measure", str(plain), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["volumes"]["RV_ml"] == pytest.approx(64 * voxel_ml)
    assert main(["measure", str(plain), "--classes", "aorta,PA"]) == 2
    assert "None of RV, MYO and LV" in _err(capsys)


def test_4_predict_stores_the_model_classes_in_its_output(tmp_path):
    img = _image(tmp_path / "heart.nii.gz", shape=(2, 32, 32))
    model = _segmenter(tmp_path / "seg.pt", ("background", "MYO", "LV"), favour=2)
    argv = [
        "predict",
        "--model",
        str(model),
        str(img),
        "--out-dir",
        str(tmp_path),
        "--no-localise",
    ]
    assert main(argv) == 0
    seg = read_nifti(tmp_path / "heart_seg.nii.gz", kind="labels")
    assert label_classes(seg.header) == ("background", "MYO", "LV")


# -- 5: measure ED ES on two grids -------------------------------------------------------
def test_5_measure_refuses_an_ed_es_pair_on_two_grids(tmp_path, capsys):
    ed = _labels(tmp_path / "ed.nii.gz", _blobs())
    es = _labels(tmp_path / "es.nii.gz", _blobs(), spacing=(8.0, 3.0, 3.0))
    assert main(["measure", str(ed), str(es)]) == 2
    assert "not on the same grid" in _err(capsys)
    vol = read_nifti(ed, kind="labels")
    moved = vol.header.copy()
    affine = vol.header.get_best_affine()
    affine[:3, 3] += 40.0
    moved.set_sform(affine)
    moved.set_qform(affine)
    import nibabel as nib

    nib.save(
        nib.Nifti1Image(np.asarray(nib.load(ed).dataobj), affine, moved), tmp_path / "es2.nii.gz"
    )
    assert main(["measure", str(ed), str(tmp_path / "es2.nii.gz")]) == 2
    assert "not on the same grid" in _err(capsys)


# -- 6: measure on empty frames, empty files, the same file, an ES without LV ----------
def test_6_measure_warns_or_refuses_when_a_number_is_not_a_measure(tmp_path, capsys):
    cine = np.stack([_blobs(), _blobs(), np.zeros((4, 20, 20), np.uint8)])
    cine[1][cine[1] == 2] = 0
    cine[1, :, 9:12, 9:12] = 2  # a smaller LV: ES
    cine = np.where(cine == 2, 3, cine)  # ACDC: LV cavity is 3
    path = _labels(tmp_path / "cine.nii.gz", cine, spacing=(0.1, *SPACING))
    assert main(["measure", str(path), "--json"]) == 0
    captured = capsys.readouterr()
    m = json.loads(captured.out)["measures"]
    assert m["es_frame"] == 1 and m["LV_EF"] < 100
    assert "Frame 2 holds no LV" in captured.err
    # ES given on the empty frame: a warning, and EF is still not silently 100 %
    assert main(["measure", str(path), "--es", "2"]) == 0
    assert "ES segmentation holds no LV" in capsys.readouterr().err
    assert main(["measure", str(path), "--es", "0"]) == 0
    assert "ED and ES are the same frame 0" in capsys.readouterr().err
    empty = _labels(tmp_path / "empty.nii.gz", np.zeros((4, 20, 20)))
    assert main(["measure", str(empty), str(empty)]) == 2
    assert "is empty" in _err(capsys)
    ed = _labels(tmp_path / "ed.nii.gz", np.where(_blobs() == 2, 3, _blobs()))
    assert main(["measure", str(ed), str(ed)]) == 0
    assert "ED and ES are the same segmentation" in capsys.readouterr().err
    # no LV at ED: EF is null in valid JSON, with a sentence
    rv_only = _labels(tmp_path / "rv.nii.gz", np.where(_blobs() == 1, 1, 0))
    assert main(["measure", str(rv_only), str(rv_only), "--json"]) == 0
    captured = capsys.readouterr()
    assert "NaN" not in captured.out
    doc = json.loads(captured.out)
    assert doc["measures"]["LV_EF"] is None and doc["warnings"]
    assert "ED segmentation holds no LV" in captured.err
    assert main(["measure", str(rv_only), str(rv_only)]) == 0
    assert "EF n/a %" in capsys.readouterr().out


# -- 7: localisation that may miss the heart -------------------------------------------
@pytest.fixture(scope="module")
def big_cine():
    return make_phantom(n_slices=4, size=(192, 192), n_frames=6, seed=5)


def test_7_motion_region_says_when_it_may_miss_the_heart(big_cine):
    img, sp = big_cine.image, big_cine.spacing[-2:]
    assert region_from_motion(img, sp).note == ""
    ys, xs = np.nonzero((big_cine.labels > 0).any(axis=(0, 1)))
    cy, cx, h = int(ys.mean()), int(xs.mean()), 30
    twin = img.copy()  # a second pulsating structure far from the heart
    ty, tx = h + 2, (192 - h - 2) if cx < 96 else h + 2
    twin[..., ty - h : ty + h, tx - h : tx + h] = img[..., cy - h : cy + h, cx - h : cx + h] * 1.2
    assert "Two structures" in region_from_motion(twin, sp).note
    far_y = slice(0, 60) if cy > 96 else slice(132, 192)
    far_x = slice(0, 60) if cx > 96 else slice(132, 192)
    assert not big_cine.labels[..., far_y, far_x].any()  # a crop with no heart
    assert (
        "Nothing in the view moves like a heart"
        in region_from_motion(img[..., far_y, far_x], sp).note
    )
    noise = np.random.default_rng(0).random((2, 4, 64, 64)).astype(np.float32)
    assert "Nothing in the view moves like a heart" in region_from_motion(noise, sp).note


def test_7_predict_says_when_noise_gives_an_empty_segmentation(tmp_path, capsys):
    ed = _image(tmp_path / "ed.nii.gz", shape=(2, 48, 48), seed=1)
    es = _image(tmp_path / "es.nii.gz", shape=(2, 48, 48), seed=2)
    model = _segmenter(tmp_path / "seg.pt", favour=0)  # finds nothing anywhere
    assert (
        main(
            ["predict", "--model", str(model), str(ed), str(es), "--out-dir", str(tmp_path / "o")]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert f"{es}: The segmentation is empty" in err
    assert "Nothing in the view moves like a heart" in err
    cine = np.zeros((3, 2, 8, 8), np.uint8)
    cine[0, 1, 2:4, 2:4] = 3
    assert segmentation_warnings(cine) == [
        "Frames 1, 2 hold no segmentation (no structure found there)."
    ]
    assert segmentation_warnings(cine[0]) == []


# -- 8: a DICOM image without TriggerTime ----------------------------------------------
def test_8_images_without_trigger_time_are_refused_not_sorted_last(tmp_path):
    written = write_series(tmp_path / "s", unique_values(3, 2, 4, 4))
    victim = next(w for w in written if w.t == 0)
    ds = pydicom.dcmread(victim.path)
    del ds.TriggerTime
    ds.save_as(victim.path)
    with pytest.raises(DicomError, match="1 image of series .* lack a TriggerTime"):
        read_dicom(tmp_path / "s")


# -- 9: a declared size beyond the voxel limit -----------------------------------------
def test_9_convert_has_the_nifti_voxel_limit_before_decoding(tmp_path, monkeypatch, capsys):
    write_series(
        tmp_path / "big", unique_values(1, 2, 4, 4), overrides={"Rows": 16500, "Columns": 16500}
    )

    def decode(im):
        raise AssertionError("pixels decoded before the size check")

    monkeypatch.setattr(dicom, "_pixels", decode)
    assert main(["convert", str(tmp_path / "big"), "--out", str(tmp_path / "b.nii.gz")]) == 2
    err = _err(capsys)
    assert "16500 x 16500 x 2 x 1 grid" in err and "NAPARI_PIX2REP_MAX_VOXELS" in err
    monkeypatch.setenv("NAPARI_PIX2REP_MAX_VOXELS", "20")
    write_series(tmp_path / "small", unique_values(2, 2, 4, 4))
    with pytest.raises(DicomError, match="more than the limit of 20 voxels"):
        read_dicom(tmp_path / "small")


# -- 10: a malformed .slices.json -----------------------------------------------------
BAD_SIDECARS = [
    {"shape": None},
    {"shape": 5},
    {"shape": [[None]]},
    {"background_only": [[None]]},
    {"background_only": [[float("inf")]]},
    {"background_only": [[[1]]]},
    {"background_only": [[0.9]]},
    {"background_only": [[True]]},
    {"version": 99},
    {"version": "1"},
]


@pytest.mark.parametrize("bad", BAD_SIDECARS, ids=[json.dumps(b) for b in BAD_SIDECARS])
def test_10_a_malformed_sidecar_is_one_sentence_and_napari_still_opens(tmp_path, bad, capsys):
    lab = np.zeros((4, 20, 20), np.uint8)
    lab[1, 5:9, 5:9] = 3
    path = _labels(tmp_path / "lab.nii.gz", lab)
    doc = {"format": "napari-pix2rep/annotated-slices", "version": 1, "shape": [4, 20, 20]}
    doc["background_only"] = [[0]]
    doc.update(bad)
    (tmp_path / "lab.slices.json").write_text(json.dumps(doc))
    with pytest.raises(AnnotationError):
        read_background_slices(path, (4, 20, 20))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (layer,) = read_layers(str(path))
    assert layer[2] == "labels" and any("not loaded" in str(w.message) for w in caught)
    img = _image(tmp_path / "img.nii.gz", shape=(4, 20, 20))
    argv = ["train", "--image", str(img), "--labels", str(path), "--out", str(tmp_path / "s.pt")]
    assert main(argv) == 2
    assert "lab.slices.json" in _err(capsys)


# -- 11 and 12: pixel spacing and orientation that place nothing ----------------------
@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"PixelSpacing": ["0", "0"]}, "PixelSpacing 0 / 0"),
        ({"PixelSpacing": ["inf", "inf"]}, "PixelSpacing inf / inf"),
        ({"PixelSpacing": ["-1.25", "1.5"]}, "two positive numbers"),
        ({"ImageOrientationPatient": ["1", "0", "0", "0", "2", "0"]}, "not two unit vectors"),
        ({"ImageOrientationPatient": ["1", "0", "0", "0.5", "0.8660254", "0"]}, "right angle"),
        ({"ImageOrientationPatient": ["0"] * 6}, "ImageOrientationPatient 0"),
        ({"ImageOrientationPatient": ["nan"] * 6}, "ImageOrientationPatient nan"),
    ],
)
@pytest.mark.filterwarnings("ignore:Invalid value for VR DS")
def test_11_12_13_spacing_and_orientation_are_refused_in_a_sentence(
    tmp_path, overrides, words, capsys
):
    write_series(tmp_path / "s", unique_values(2, 3, 4, 4), overrides=overrides)
    assert main(["convert", str(tmp_path / "s"), "--out", str(tmp_path / "o.nii.gz")]) == 2
    err = _err(capsys)
    assert words in err and "trigger time" not in err  # 13: not a "duplicate trigger time"


def test_12_images_at_one_depth_apart_in_plane_are_not_two_phases(tmp_path):
    uid = pydicom.uid.generate_uid()
    for k, (dx, tt) in enumerate(((0.0, "10"), (50.0, "60"))):
        write_series(
            tmp_path / "s",
            unique_values(1, 3, 4, 4, seed=k),
            origin=(-120.0 + dx, 80.0, 30.0),
            uid=uid,
            prefix=f"p{k}_",
            overrides={"TriggerTime": tt},
        )
    with pytest.raises(DicomError, match="50.0 mm apart in the image plane"):
        read_dicom(tmp_path / "s")


# -- 13: messages ------------------------------------------------------------------------
def test_13_messages_name_what_matters(tmp_path, monkeypatch, capsys):
    written = write_series(tmp_path / "s", unique_values(3, 2, 4, 4))
    files = [str(w.path) for w in written]
    # predict dir/*.dcm: the files of one series are one input (one target), no long list
    assert len(predict_targets(files, tmp_path / "o", False)) == 1
    # convert --out FOLDER suggests a NIfTI name, not model.pt
    assert main(["convert", str(tmp_path / "s"), "--out", str(tmp_path)]) == 2
    err = _err(capsys)
    assert "cine.nii.gz" in err and "model.pt" not in err
    # the summary: voxel size in mm in z, y, x order, the phase interval in seconds
    assert main(["convert", str(tmp_path / "s"), "--out", str(tmp_path / "c.nii.gz")]) == 0
    out = capsys.readouterr().out
    assert "voxels 8 x 1.25 x 1.5 mm" in out and "s between phases" in out

    def no_memory(*a, **k):
        raise MemoryError

    monkeypatch.setattr(dicom, "read_dicom", no_memory)
    assert main(["convert", str(tmp_path / "s"), "--out", str(tmp_path / "d.nii.gz")]) == 2
    err = _err(capsys)
    assert "ran out of memory" in err and "--batch-size" not in err
