"""npe2 reader / writer hooks and sample data (no Qt): layer tuples, scale, metadata, export."""

from __future__ import annotations

import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from napari_pix2rep import _sample_data
from napari_pix2rep._reader import contrast_limits, get_reader
from napari_pix2rep._writer import write_image, write_labels
from napari_pix2rep.evaluation.phantom import make_phantom
from napari_pix2rep.io.layer_meta import METADATA_KEY
from napari_pix2rep.io.nifti import NiftiError, read_nifti
from napari_pix2rep.io.nifti_write import write_nifti

DTYPE_FIELDS = ("datatype", "bitpix", "scl_slope", "scl_inter", "cal_min", "cal_max")


@pytest.fixture
def phantom_files(tmp_path):
    """A phantom image and its truth written as NIfTI; returns (image path, labels path)."""
    ph = make_phantom(n_slices=6, size=(64, 64), seed=3)
    vol = ph.to_volume("image")
    image = write_nifti(tmp_path / "case_frame01.nii.gz", ph.image, vol, kind="image")
    labels = write_nifti(tmp_path / "case_frame01_gt.nii.gz", ph.labels, vol, kind="labels")
    return image, labels


@pytest.mark.parametrize(
    "path", ["a.png", "b.txt", "c.nii.zip", "d.gz", ["e.nii", "f.png"], [], "folder_nii"]
)
def test_reader_declines_non_nifti(path, tmp_path):
    if path == "folder_nii":
        path = tmp_path / "x.nii"
        path.mkdir()
        path = str(path)
    assert get_reader(path) is None


@pytest.mark.parametrize("path", ["a.nii", "b.nii.gz", "C.NII.GZ", ["x.nii", "y.nii.gz"]])
def test_reader_accepts_nifti_names(path):
    assert callable(get_reader(path))


def test_reader_layers(phantom_files):
    image_path, labels_path = phantom_files
    layers = get_reader([image_path, labels_path])([image_path, labels_path])
    (img, img_kw, img_type), (lab, lab_kw, lab_type) = layers
    assert (img_type, lab_type) == ("image", "labels")
    assert img_kw["name"] == "case_frame01" and lab_kw["name"] == "case_frame01_gt"
    assert img.dtype == np.float32 and np.issubdtype(lab.dtype, np.integer)
    spacing = read_nifti(image_path).spacing
    assert img_kw["scale"] == spacing == lab_kw["scale"] == (10.0, 1.5, 1.5)
    assert img_kw["colormap"] == "gray"
    lo, hi = img_kw["contrast_limits"]
    assert 0 <= lo < hi <= img.max()
    assert METADATA_KEY in img_kw["metadata"] and METADATA_KEY in lab_kw["metadata"]
    assert set(np.unique(lab)) == {0, 1, 2, 3}


def test_reader_raises_one_sentence(tmp_path):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00garbage")
    reader = get_reader(str(bad))
    with pytest.raises(NiftiError, match=r"^broken\.nii\.gz is truncated or corrupt: .*\.$"):
        reader(str(bad))


def test_contrast_limits_never_empty():
    assert contrast_limits(np.zeros((2, 3, 3))) == [0.0, 1.0]
    lo, hi = contrast_limits(np.arange(1000.0).reshape(10, 10, 10))
    assert 0 < lo < 10 and 989 < hi < 999


def test_write_labels_uses_image_header(phantom_files, tmp_path, assert_same_header):
    image_path, _ = phantom_files
    ((img, kw, _),) = get_reader(image_path)(image_path)
    seg = (img > img.mean()).astype(np.int32)  # a napari labels layer is often int32
    meta = {"metadata": kw["metadata"], "scale": kw["scale"], "name": "seg"}
    (out,) = write_labels(str(tmp_path / "pred"), seg, meta)  # suffix added
    assert out.endswith("pred.nii.gz")
    saved = nib.load(out)
    assert saved.get_data_dtype() == np.uint8
    assert_same_header(nib.load(image_path).header, saved.header, ignore=DTYPE_FIELDS)
    np.testing.assert_array_equal(read_nifti(out).data, seg)


def test_write_image_round_trip(phantom_files, tmp_path, assert_same_header):
    image_path, _ = phantom_files
    ((img, kw, _),) = get_reader(image_path)(image_path)
    (out,) = write_image(str(tmp_path / "copy.nii"), img, {"metadata": kw["metadata"]})
    assert out.endswith("copy.nii")
    assert_same_header(nib.load(image_path).header, nib.load(out).header)
    np.testing.assert_array_equal(read_nifti(out).data, img)


def test_writer_without_metadata_uses_scale_never_identity(tmp_path):
    seg = np.zeros((4, 8, 8), np.uint8)
    (out,) = write_labels(str(tmp_path / "s.nii.gz"), seg, {"metadata": {}, "scale": (6, 2, 1.5)})
    np.testing.assert_array_equal(nib.load(out).affine, np.diag([1.5, 2.0, 6.0, 1.0]))
    with pytest.raises(NiftiError, match="no NIfTI header"):
        write_labels(str(tmp_path / "t.nii.gz"), seg, {"metadata": {}})


def test_writer_refuses_mismatched_shape(phantom_files, tmp_path):
    image_path, _ = phantom_files
    ((img, kw, _),) = get_reader(image_path)(image_path)
    with pytest.raises(NiftiError, match="does not match the source image shape"):
        write_labels(str(tmp_path / "x.nii.gz"), np.zeros((2, 3, 4), np.uint8), kw)


@pytest.mark.parametrize("func", [_sample_data.phantom_3d, _sample_data.phantom_4d])
def test_sample_data(func, tmp_path, assert_same_header):
    (img, img_kw, img_type), (lab, lab_kw, lab_type) = func()
    assert (img_type, lab_type) == ("image", "labels")
    assert lab_kw["name"].endswith("truth")
    assert img.shape == lab.shape and img.dtype == np.float32 and lab.dtype == np.uint8
    assert img_kw["scale"] == lab_kw["scale"] and len(img_kw["scale"]) == img.ndim
    (out,) = write_labels(str(tmp_path / "truth.nii.gz"), lab, lab_kw)
    (src,) = write_image(str(tmp_path / "image.nii.gz"), img, img_kw)
    assert_same_header(nib.load(src).header, nib.load(out).header, ignore=DTYPE_FIELDS)
    assert read_nifti(out).spacing == img_kw["scale"]


@pytest.mark.realdata
def test_reader_on_acdc(acdc_root):
    image = str(acdc_root / "patient001/patient001_frame01.nii.gz")
    truth = str(acdc_root / "patient001/patient001_frame01_gt.nii.gz")
    cine = str(acdc_root / "patient090/patient090_4d.nii.gz")
    layers = get_reader([image, truth, cine])([image, truth, cine])
    assert [t for *_, t in layers] == ["image", "labels", "image"]
    assert layers[0][1]["scale"] == (10.0, 1.5625, 1.5625)
    assert layers[1][0].dtype == np.uint8
    assert layers[2][0].shape == (12, 7, 224, 154)
    assert layers[2][1]["scale"] == (1.0, 10.0, 1.78571, 1.78571)


def test_hooks_do_not_import_torch_or_qt():
    code = (
        "import sys\n"
        "import napari_pix2rep._reader, napari_pix2rep._writer, napari_pix2rep._sample_data\n"
        "import napari_pix2rep.io.nifti, napari_pix2rep.evaluation.phantom\n"
        "bad = [m for m in ('torch', 'qtpy', 'PyQt5', 'napari') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_background_only_slices_round_trip_through_the_sidecar(phantom_files, tmp_path):
    from napari_pix2rep.annotate.annotations import sidecar_path

    _, labels_path = phantom_files
    ((data, meta, kind),) = get_reader(labels_path)(labels_path)
    assert kind == "labels" and "pix2rep_background_slices" not in meta["metadata"]
    meta["metadata"]["pix2rep_background_slices"] = [0, 5]
    (out,) = write_labels(str(tmp_path / "ann.nii.gz"), data, meta)
    side = sidecar_path(out)
    assert side.name == "ann.slices.json" and side.is_file()
    ((_, again, _),) = get_reader(out)(out)
    assert again["metadata"]["pix2rep_background_slices"] == [0, 5]

    # saved again without marks: the stale sidecar goes
    del meta["metadata"]["pix2rep_background_slices"]
    write_labels(out, data, meta)
    assert not side.exists()


def test_a_bad_sidecar_warns_and_the_labels_still_open(phantom_files, tmp_path):
    from napari_pix2rep.annotate.annotations import sidecar_path

    _, labels_path = phantom_files
    sidecar_path(labels_path).write_text('{"format": "something else"}', encoding="utf-8")
    with pytest.warns(UserWarning, match="Background-only slices not loaded: .* is not a"):
        ((data, meta, kind),) = get_reader(labels_path)(labels_path)
    assert kind == "labels" and data.any()
    assert "pix2rep_background_slices" not in meta["metadata"]
