"""napari_pix2rep.io.nifti: exact round trips, header preservation, clear errors, atomic writes."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_pix2rep.io import nifti
from napari_pix2rep.io.layer_meta import (
    METADATA_KEY,
    copy_metadata,
    volume_from_layer,
    volume_metadata,
)
from napari_pix2rep.io.nifti import NiftiError, Volume, is_label_file, read_nifti
from napari_pix2rep.io.nifti_write import write_nifti


def _oblique_header(shape_xyz, zooms, dtype=np.int16, units=("mm", "sec")) -> nib.Nifti1Header:
    """A header with different sform and qform, odd pixdim, units, dim_info and descrip."""
    h = nib.Nifti1Header()
    h.set_data_shape(shape_xyz)
    h.set_data_dtype(dtype)
    c, s = np.cos(0.4), np.sin(0.4)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    sform = np.eye(4)
    sform[:3, :3] = rot @ np.diag(zooms[:3])
    sform[:3, 3] = [-12.5, 30.25, 7.0]
    qform = np.diag([*zooms[:3], 1.0])
    qform[:3, 3] = [1.0, 2.0, 3.0]
    h.set_qform(qform, code=1)
    h.set_sform(sform, code=2)
    h.set_zooms(zooms)
    h.set_xyzt_units(*units)
    h.set_dim_info(freq=1, phase=0, slice=2)
    h["descrip"] = b"round trip test"
    h["aux_file"] = b"aux"
    h["intent_name"] = b"none"
    h["slice_duration"] = 0.05
    h["toffset"] = 1.5
    return h


def _save(path: Path, data_xyz: np.ndarray, header: nib.Nifti1Header) -> Path:
    nib.save(nib.Nifti1Image(data_xyz, None, header=header), str(path))
    return path


#: header fields that legitimately change with the written data type
DTYPE_FIELDS = ("datatype", "bitpix", "scl_slope", "scl_inter", "cal_min", "cal_max")

# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_round_trip_3d_int16_image_exact(tmp_path, suffix, assert_same_header):
    rng = np.random.default_rng(1)
    data = rng.integers(-300, 2000, size=(24, 20, 6)).astype(np.int16)
    src = _save(tmp_path / f"scan{suffix}", data, _oblique_header(data.shape, (1.25, 1.25, 8.0)))
    vol = read_nifti(src)
    assert vol.data.dtype == np.float32
    assert vol.shape == (6, 20, 24)  # (z, y, x)
    assert vol.spacing == (8.0, 1.25, 1.25)
    assert vol.inplane_spacing == (1.25, 1.25)
    np.testing.assert_array_equal(vol.data, data.transpose(2, 1, 0))

    out = Path(write_nifti(tmp_path / f"copy{suffix}", vol.data, vol, kind="image"))
    a, b = nib.load(str(src)), nib.load(str(out))
    assert b.get_data_dtype() == np.int16  # lossless: source dtype kept
    np.testing.assert_array_equal(np.asanyarray(b.dataobj), data)
    assert_same_header(a.header, b.header, ignore=("vox_offset",))
    np.testing.assert_array_equal(a.affine, b.affine)


def test_round_trip_4d_float_and_time_spacing(tmp_path, assert_same_header):
    rng = np.random.default_rng(2)
    data = rng.random((16, 12, 5, 7), dtype=np.float32)
    header = _oblique_header(data.shape, (1.5, 1.5, 10.0, 35.0), np.float32, ("mm", "msec"))
    src = _save(tmp_path / "cine.nii.gz", data, header)
    vol = read_nifti(src)
    assert vol.is_4d and vol.n_frames == 7 and vol.n_slices == 5
    assert vol.spacing == (0.035, 10.0, 1.5, 1.5)  # msec -> seconds
    out = write_nifti(tmp_path / "cine_copy.nii.gz", vol.data, vol, kind="image")
    b = nib.load(out)
    np.testing.assert_array_equal(b.get_fdata(dtype=np.float32), data)
    assert_same_header(nib.load(str(src)).header, b.header, ignore=("vox_offset",))


def test_labels_round_trip_exact_values_and_dtype(tmp_path, assert_same_header):
    labels = np.zeros((20, 18, 4), np.uint8)
    labels[5:10, 5:10] = 1
    labels[10:15, 2:8, 1:3] = 3
    src = _save(
        tmp_path / "seg.nii.gz", labels, _oblique_header(labels.shape, (1, 1, 5), np.uint8)
    )
    vol = read_nifti(src)
    assert vol.data.dtype == np.uint8 and vol.is_labels
    out = write_nifti(tmp_path / "seg2.nii.gz", vol.data.astype(np.int64), vol, kind="labels")
    b = nib.load(out)
    assert b.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asanyarray(b.dataobj), labels)
    assert_same_header(nib.load(str(src)).header, b.header, ignore=("vox_offset",))


def test_labels_written_with_image_header(tmp_path, assert_same_header):
    """A segmentation saved for an int16 image gets the image header (only dtype fields differ)."""
    data = np.arange(20 * 16 * 3, dtype=np.int16).reshape(20, 16, 3)
    header = _oblique_header(data.shape, (1.4, 1.4, 6.0))
    header["cal_max"] = 900.0
    src = _save(tmp_path / "img.nii", data, header)
    with open(src, "r+b") as f:  # nibabel recomputes scaling on save: patch scl_slope/inter
        f.seek(112)
        f.write(np.array([2.0, -10.0], "<f4").tobytes())
    header.set_slope_inter(2.0, -10.0)
    image = read_nifti(src)
    np.testing.assert_allclose(image.data, data.transpose(2, 1, 0) * 2.0 - 10.0)
    seg = np.zeros(image.shape, np.int32)
    seg[1, 4:8, 4:9] = 2
    seg[2, 0, 0] = 300  # > 255 -> uint16
    out = write_nifti(tmp_path / "img_seg.nii.gz", seg, image, kind="labels")
    b = nib.load(out)
    assert b.get_data_dtype() == np.uint16
    assert b.dataobj.slope == 1.0 and b.dataobj.inter == 0.0  # labels are not scaled
    assert b.header["cal_max"] == 0
    np.testing.assert_array_equal(np.asanyarray(b.dataobj), seg.transpose(2, 1, 0))
    assert_same_header(header, b.header, ignore=(*DTYPE_FIELDS, "vox_offset"))


def test_image_dtype_falls_back_to_float32_when_lossy(tmp_path):
    data = np.ones((8, 8, 3), np.int16)
    src = _save(tmp_path / "a.nii.gz", data, _oblique_header(data.shape, (1, 1, 1)))
    vol = read_nifti(src)
    out = write_nifti(tmp_path / "b.nii.gz", vol.data * 0.5, vol, kind="image")
    b = nib.load(out)
    assert b.get_data_dtype() == np.float32
    np.testing.assert_array_equal(b.get_fdata(), data * 0.5)


@pytest.mark.parametrize("shape", [(16, 12, 5, 7), (10, 9, 4, 1), (8, 6, 3)])
def test_grid_from_the_header_is_what_reading_gives(tmp_path, shape):
    data = np.random.default_rng(4).random(shape).astype(np.float32)
    zooms = (1.5, 1.25, 10.0, 35.0)[: len(shape)]
    src = _save(tmp_path / "g.nii.gz", data, _oblique_header(shape, zooms, np.float32))
    vol = read_nifti(src)
    grid_shape, spacing, affine = nifti.nifti_grid(src)
    assert grid_shape == vol.shape and spacing == vol.spacing
    np.testing.assert_array_equal(affine, vol.affine)
    with pytest.raises(NiftiError, match="is empty"):
        nifti.nifti_grid(_empty(tmp_path))


def _empty(tmp_path):
    empty = tmp_path / "empty.nii.gz"
    empty.write_bytes(b"")
    return empty


def test_single_frame_4d_is_squeezed_and_restored(tmp_path, assert_same_header):
    data = np.random.default_rng(3).random((10, 9, 4, 1)).astype(np.float32)
    src = _save(
        tmp_path / "one.nii.gz", data, _oblique_header(data.shape, (1, 1, 2, 1), np.float32)
    )
    vol = read_nifti(src)
    assert vol.shape == (4, 9, 10) and not vol.is_4d
    out = write_nifti(tmp_path / "one2.nii.gz", vol.data, vol, kind="image")
    b = nib.load(out)
    assert b.shape == (10, 9, 4, 1)
    assert_same_header(nib.load(str(src)).header, b.header, ignore=("vox_offset",))


def test_header_extensions_survive(tmp_path):
    data = np.zeros((4, 4, 2), np.uint8)
    header = _oblique_header(data.shape, (1, 1, 1), np.uint8)
    header.extensions.append(nib.nifti1.Nifti1Extension(6, b"a comment"))
    src = _save(tmp_path / "ext_seg.nii", data, header)
    vol = read_nifti(src)
    meta = volume_metadata(vol)
    out = write_nifti(tmp_path / "ext2.nii", vol.data, meta, kind="labels")
    exts = nib.load(out).header.extensions
    assert [(e.get_code(), e.get_content()) for e in exts] == [(6, b"a comment")]


def test_spacing_units_and_bad_zooms(tmp_path):
    data = np.zeros((4, 4, 2, 3), np.float32)
    h = _oblique_header(data.shape, (0.001, 0.001, 0.005, 2.0), np.float32, ("meter", "hz"))
    vol = read_nifti(_save(tmp_path / "m.nii", data, h))
    assert vol.spacing == (1.0, 5.0, 1.0, 1.0)  # metres -> mm; Hz is not a time unit
    h = nib.Nifti1Header()
    h.set_data_shape((4, 4, 2))
    h["pixdim"][1:4] = [0.0, -2.0, 3.0]  # zero and negative zooms
    vol = read_nifti(_save(tmp_path / "z.nii", np.zeros((4, 4, 2), np.float32), h))
    assert vol.spacing == (3.0, 2.0, 1.0)


# --------------------------------------------------------------------------- layer metadata


def test_layer_metadata_round_trip_is_picklable(tmp_path, assert_same_header):
    data = np.random.default_rng(4).integers(0, 500, size=(12, 10, 3)).astype(np.int16)
    src = _save(tmp_path / "i.nii.gz", data, _oblique_header(data.shape, (1.1, 1.2, 7.0)))
    vol = read_nifti(src)
    meta = volume_metadata(vol)
    inner = meta[METADATA_KEY]
    assert isinstance(inner["header"], bytes)
    assert inner["axis_order"] == "xyz"
    assert inner["spacing"] == list(vol.spacing)
    assert inner["source_path"] == str(src)
    meta2 = pickle.loads(pickle.dumps(meta))
    rebuilt = volume_from_layer(vol.data, meta2)
    assert rebuilt.spacing == vol.spacing
    np.testing.assert_array_equal(rebuilt.affine, vol.affine)
    assert_same_header(rebuilt.header, vol.header)
    # a labels layer made for this image (metadata copied) exports with its header
    seg = np.zeros(vol.shape, np.uint8)
    out = write_nifti(tmp_path / "i_seg.nii.gz", seg, copy_metadata(meta))
    assert_same_header(vol.header, nib.load(out).header, ignore=(*DTYPE_FIELDS, "vox_offset"))


def test_no_header_needs_explicit_spacing(tmp_path):
    data = np.zeros((3, 5, 4), np.uint8)
    with pytest.raises(NiftiError, match="no source NIfTI header"):
        write_nifti(tmp_path / "x.nii.gz", data, None)
    with pytest.raises(NiftiError, match="no NIfTI header"):
        volume_from_layer(data, {"other": 1})
    out = write_nifti(tmp_path / "x.nii.gz", data, {}, spacing=(8.0, 1.5, 1.25))
    img = nib.load(out)
    np.testing.assert_array_equal(img.affine, np.diag([1.25, 1.5, 8.0, 1.0]))
    assert img.header.get_sform(coded=True)[1] == 1
    assert img.header.get_qform(coded=True)[1] == 1
    assert img.header.get_zooms() == (1.25, 1.5, 8.0)
    assert read_nifti(out).spacing == (8.0, 1.5, 1.25)


def test_volume_with_data_keeps_geometry(tmp_path):
    data = np.zeros((6, 5, 4), np.float32)
    vol = read_nifti(_save(tmp_path / "v.nii", data, _oblique_header(data.shape, (1, 1, 3))))
    new = vol.with_data(np.ones(vol.shape, np.uint8))
    assert new.spacing == vol.spacing and new.header is not vol.header
    with pytest.raises(ValueError, match="does not match"):
        vol.with_data(np.ones((1, 2, 3)))


# --------------------------------------------------------------------------- label detection


def test_is_label_file_by_name_and_content():
    ints = np.zeros((3, 4, 4), np.int16)
    ints[0, 0, :4] = [0, 1, 2, 3]
    many = np.arange(3 * 20 * 20, dtype=np.int16).reshape(3, 20, 20)
    floats = np.linspace(0, 1, 48, dtype=np.float32).reshape(3, 4, 4)
    for name in [
        "p_gt.nii.gz",
        "P_SEG.nii",
        "a_label.nii.gz",
        "a_labels.nii",
        "brain_mask.nii.gz",
    ]:
        assert is_label_file(name, ints.astype(np.float32))
    assert is_label_file("scan.nii.gz", ints)  # integer data, few values
    assert not is_label_file("scan.nii.gz", many)
    assert not is_label_file("scan.nii.gz", ints.astype(np.float32))
    assert not is_label_file("x_seg.nii.gz", floats)  # named like a mask but not integers
    assert not is_label_file("scan_gt_extra.nii.gz", many)
    assert not is_label_file(None, -ints - 1)


def test_auto_kind_reads_float_label_file_as_integers(tmp_path):
    seg = np.zeros((6, 6, 2), np.float32)
    seg[1:3, 1:3] = 2.0
    vol = read_nifti(
        _save(tmp_path / "case_seg.nii.gz", seg, _oblique_header(seg.shape, (1, 1, 1), np.float32))
    )
    assert vol.data.dtype == np.uint8 and vol.data.max() == 2
    image = read_nifti(tmp_path / "case_seg.nii.gz", kind="image")
    assert image.data.dtype == np.float32


# --------------------------------------------------------------------------- bad inputs


def _valid(tmp_path: Path, suffix=".nii.gz") -> Path:
    data = np.random.default_rng(5).random((30, 30, 6)).astype(np.float32)
    return _save(
        tmp_path / f"patient{suffix}", data, _oblique_header(data.shape, (1, 1, 5), np.float32)
    )


def _assert_one_sentence(message: str, name: str) -> None:
    assert name in message
    assert message.endswith(".")
    assert "\n" not in message


def test_truncated_gzip(tmp_path):
    good = _valid(tmp_path).read_bytes()
    for cut, expected in [(len(good) // 2, "truncated or corrupt"), (60, "truncated or corrupt")]:
        bad = tmp_path / "cut.nii.gz"
        bad.write_bytes(good[:cut])
        with pytest.raises(NiftiError, match=expected) as err:
            read_nifti(bad)
        _assert_one_sentence(str(err.value), "cut.nii.gz")


def test_truncated_uncompressed(tmp_path):
    good = _valid(tmp_path, ".nii").read_bytes()
    for cut in (len(good) - 100, 200):
        bad = tmp_path / "cut.nii"
        bad.write_bytes(good[:cut])
        with pytest.raises(NiftiError, match=r"^cut\.nii is truncated or corrupt") as err:
            read_nifti(bad)
        _assert_one_sentence(str(err.value), "cut.nii")


@pytest.mark.parametrize("name", ["junk.nii", "junk.nii.gz"])
def test_not_nifti(tmp_path, name):
    bad = tmp_path / name
    bad.write_bytes(b"this is not a NIfTI image at all " * 40)
    with pytest.raises(NiftiError, match="is not a NIfTI file") as err:
        read_nifti(bad)
    _assert_one_sentence(str(err.value), name)


def test_empty_and_missing(tmp_path):
    empty = tmp_path / "empty.nii.gz"
    empty.touch()
    with pytest.raises(NiftiError, match=r"^empty\.nii\.gz is empty"):
        read_nifti(empty)
    with pytest.raises(NiftiError, match="does not exist"):
        read_nifti(tmp_path / "missing.nii.gz")
    with pytest.raises(NiftiError, match="is a folder"):
        (tmp_path / "dir.nii").mkdir()
        read_nifti(tmp_path / "dir.nii")


@pytest.mark.parametrize("shape", [(5, 6), (5, 6, 3, 2, 2)])
def test_wrong_dimensionality(tmp_path, shape):
    path = tmp_path / "dims.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(shape, np.float32), np.eye(4)), str(path))
    with pytest.raises(NiftiError, match=f"has {len(shape)} dimensions") as err:
        read_nifti(path)
    _assert_one_sentence(str(err.value), "dims.nii.gz")


@pytest.mark.parametrize(
    "bad_value, words", [(np.nan, "1 NaN and 0 infinite"), (np.inf, "0 NaN and 1 infinite")]
)
def test_non_finite_values(tmp_path, bad_value, words):
    data = np.zeros((5, 5, 2), np.float32)
    data[1, 2, 1] = bad_value
    path = tmp_path / "nonfinite.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    with pytest.raises(NiftiError, match=words) as err:
        read_nifti(path)
    _assert_one_sentence(str(err.value), "nonfinite.nii.gz")


def test_write_rejects_bad_labels_and_shapes(tmp_path):
    vol = read_nifti(_valid(tmp_path))
    target = tmp_path / "out_gt.nii.gz"
    with pytest.raises(NiftiError, match="does not match the source image shape"):
        write_nifti(target, np.zeros((6, 30, 29), np.uint8), vol)
    with pytest.raises(NiftiError, match="non-negative integers"):
        write_nifti(target, np.full(vol.shape, -1, np.int32), vol)
    with pytest.raises(NiftiError, match="non-negative integers"):
        write_nifti(target, np.full(vol.shape, 0.5), vol)
    with pytest.raises(NiftiError, match="up to 65535"):
        write_nifti(target, np.full(vol.shape, 70000, np.int32), vol)
    with pytest.raises(NiftiError, match="must end with .nii or .nii.gz"):
        write_nifti(tmp_path / "out.png", np.zeros(vol.shape, np.uint8), vol)
    with pytest.raises(NiftiError, match="NaN or infinite"):
        write_nifti(target, np.full(vol.shape, np.nan, np.float32), vol, kind="image")
    with pytest.raises(NiftiError, match="only 3D"):
        write_nifti(target, np.zeros((30, 30), np.uint8), vol)
    with pytest.raises(NiftiError, match="folder .* does not exist"):
        write_nifti(tmp_path / "nope" / "x.nii.gz", np.zeros(vol.shape, np.uint8), vol)
    assert not target.exists()


def test_failed_write_keeps_previous_file_and_no_temp(tmp_path, monkeypatch):
    vol = read_nifti(_valid(tmp_path))
    target = tmp_path / "patient_gt.nii.gz"
    write_nifti(target, np.ones(vol.shape, np.uint8), vol)
    before = target.read_bytes()
    files_before = sorted(os.listdir(tmp_path))

    def broken_save(img, filename):
        Path(filename).write_bytes(b"half a file")  # something partial on disk, then fail
        raise OSError("disk full")

    monkeypatch.setattr(nifti.nib, "save", broken_save)
    with pytest.raises(NiftiError, match=r"^Cannot write patient_gt\.nii\.gz: disk full\.$"):
        write_nifti(target, np.zeros(vol.shape, np.uint8), vol)
    assert target.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == files_before


def test_written_file_mode_follows_umask(tmp_path):
    vol = read_nifti(_valid(tmp_path))
    out = Path(write_nifti(tmp_path / "m_gt.nii.gz", np.zeros(vol.shape, np.uint8), vol))
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask


def test_volume_is_a_dataclass_with_helpers():
    h = nib.Nifti1Header()
    vol = Volume(np.zeros((2, 3, 4, 5), np.float32), (1.0, 8.0, 1.5, 1.25), h, np.eye(4), None)
    assert vol.is_4d and vol.n_frames == 2 and vol.n_slices == 3
    assert vol.inplane_spacing == (1.5, 1.25) and vol.slice_spacing == 8.0
    assert vol.name == "volume"


# --------------------------------------------------------------------------- real ACDC data

REAL_FILES = [
    "patient001/patient001_frame01.nii.gz",  # int16 image (DCM)
    "patient001/patient001_frame01_gt.nii.gz",  # uint8 labels
    "patient009/patient009_frame01.nii.gz",  # float32 image
    "patient090/patient090_frame04.nii.gz",  # uint8 image (not labels)
    "patient090/patient090_frame04_gt.nii.gz",
    "patient090/patient090_4d.nii.gz",  # float32 cine, 12 frames
    "patient067/patient067_frame10_gt.nii.gz",
]


@pytest.mark.realdata
@pytest.mark.parametrize("rel", REAL_FILES)
def test_acdc_read_write_round_trip(acdc_root, tmp_path, rel, assert_same_header):
    src = acdc_root / rel
    if not src.exists():
        pytest.skip(f"{src} not present")
    original = nib.load(str(src))
    vol = read_nifti(src)
    expect_labels = rel.endswith("_gt.nii.gz")
    assert vol.is_labels == expect_labels
    zooms = original.header.get_zooms()
    assert vol.spacing[-3:] == tuple(
        float(np.format_float_positional(np.float32(z), unique=True)) for z in zooms[2::-1]
    )
    if vol.is_4d:
        assert vol.shape == (12, *original.shape[2::-1])
    kind = "labels" if expect_labels else "image"
    out = write_nifti(tmp_path / src.name, vol.data, vol, kind=kind)
    copy = nib.load(out)
    assert copy.get_data_dtype() == original.get_data_dtype()
    np.testing.assert_array_equal(np.asanyarray(copy.dataobj), np.asanyarray(original.dataobj))
    np.testing.assert_array_equal(copy.affine, original.affine)
    assert_same_header(original.header, copy.header)  # every field, vox_offset included


@pytest.mark.realdata
def test_acdc_labels_get_image_header(acdc_root, tmp_path, assert_same_header):
    """The ACDC quirk: sform is unit-scaled while pixdim holds the spacing; both survive."""
    image = read_nifti(acdc_root / "patient001/patient001_frame01.nii.gz")
    assert image.spacing == (10.0, 1.5625, 1.5625)
    np.testing.assert_array_equal(np.abs(np.diag(image.affine)), [1, 1, 1, 1])
    truth = read_nifti(acdc_root / "patient001/patient001_frame01_gt.nii.gz")
    out = write_nifti(tmp_path / "pred.nii.gz", truth.data, volume_metadata(image))
    saved = nib.load(out)
    assert_same_header(image.header, saved.header, ignore=DTYPE_FIELDS)
    assert saved.header.get_zooms() == (1.5625, 1.5625, 10.0)


def test_nifti2_and_big_endian_round_trip(tmp_path, assert_same_header):
    data = np.arange(60, dtype=np.int16).reshape(5, 4, 3)
    h = nib.Nifti1Header(endianness=">")
    h.set_data_shape(data.shape)
    h.set_data_dtype(">i2")
    h.set_sform(np.diag([2.0, 2.0, 3.0, 1.0]), code=1)
    src = _save(tmp_path / "be.nii", data.astype(">i2"), h)
    vol = read_nifti(src)
    out = nib.load(write_nifti(tmp_path / "be2.nii", vol.data, vol, kind="image"))
    assert out.header.endianness == ">" and out.get_data_dtype() == np.dtype(">i2")
    np.testing.assert_array_equal(np.asanyarray(out.dataobj), data)
    assert_same_header(nib.load(str(src)).header, out.header, ignore=("vox_offset",))

    nib.save(
        nib.Nifti2Image(data.astype(np.float32), np.diag([1, 2, 3, 1])), tmp_path / "n2.nii.gz"
    )
    vol2 = read_nifti(tmp_path / "n2.nii.gz")
    assert isinstance(vol2.header, nib.Nifti2Header)
    seg = write_nifti(
        tmp_path / "n2_gt.nii.gz", np.zeros(vol2.shape, np.uint8), volume_metadata(vol2)
    )
    assert isinstance(nib.load(seg), nib.Nifti2Image)


# --------------------------------------------------------------------------- untrusted headers


def _header_only_file(path: Path, shape_xyz: tuple[int, ...], dtype=np.int16) -> Path:
    """A .nii.gz whose header declares ``shape_xyz`` but which holds a few bytes of data."""
    import gzip

    h = nib.Nifti1Header()
    h.set_data_shape(shape_xyz)
    h.set_data_dtype(dtype)
    h["vox_offset"] = 352
    path.write_bytes(gzip.compress(h.binaryblock + b"\0" * 4 + b"\0" * 64))
    return path


def test_a_header_declaring_a_huge_grid_is_refused_before_allocating(tmp_path):
    path = _header_only_file(tmp_path / "huge.nii.gz", (2048, 2048, 512, 30))
    assert path.stat().st_size < 1000
    with pytest.raises(NiftiError) as err:
        read_nifti(path)  # would be 240 GiB of float32
    assert str(err.value) == (
        "huge.nii.gz declares a 2048 x 2048 x 512 x 30 grid (64,424,509,440 voxels, "
        "240.0 GiB to decode), more than the limit of 536,870,912 voxels; set "
        "NAPARI_PIX2REP_MAX_VOXELS to a larger number to read it."
    )


def test_the_voxel_limit_is_configurable(tmp_path, monkeypatch):
    path = _save(tmp_path / "v.nii", np.ones((10, 10, 2), np.float32), nib.Nifti1Header())
    with pytest.raises(NiftiError, match="10 x 10 x 2 grid .* limit of 100 voxels"):
        read_nifti(path, max_voxels=100)
    assert read_nifti(path, max_voxels=200).shape == (2, 10, 10)
    monkeypatch.setenv("NAPARI_PIX2REP_MAX_VOXELS", "199")
    with pytest.raises(NiftiError, match="(800 bytes to decode).*limit of 199 voxels"):
        read_nifti(path)
    monkeypatch.setenv("NAPARI_PIX2REP_MAX_VOXELS", "lots")
    with pytest.raises(NiftiError, match="NAPARI_PIX2REP_MAX_VOXELS must be a positive whole"):
        read_nifti(path)
    monkeypatch.setenv("NAPARI_PIX2REP_MAX_VOXELS", "200")
    assert read_nifti(path, kind="labels").shape == (2, 10, 10)


def test_the_truncation_check_streams_a_gzip_bomb(tmp_path):
    """64 MiB of zeros in a 64 KiB gzip: the check must not inflate it into memory."""
    import tracemalloc
    import zlib

    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(1 << 20)
    body = b"".join(packer.compress(chunk) for _ in range(64)) + packer.flush()
    (tmp_path / "bomb.nii.gz").write_bytes(body)
    assert len(body) < 100_000
    tracemalloc.start()
    try:
        with pytest.raises(NiftiError, match="bomb.nii.gz is not a NIfTI file"):
            read_nifti(tmp_path / "bomb.nii.gz")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"{peak / 2**20:.0f} MiB held to check a 64 KiB file"


def test_a_cut_gzip_is_still_reported_as_cut(tmp_path):
    path = _header_only_file(tmp_path / "x.nii.gz", (4, 4, 2))
    good = path.read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(good[:30])
    with pytest.raises(NiftiError, match="cut.nii.gz is truncated or corrupt: the gzip stream"):
        read_nifti(tmp_path / "cut.nii.gz")


@pytest.mark.parametrize(
    "units, zooms, spacing",
    [
        (("micron", "sec"), (50.0, 50.0, 500.0, 1.0), (1.0, 0.5, 0.05, 0.05)),
        (("meter", "msec"), (0.0015, 0.0015, 0.01, 30.0), (0.03, 10.0, 1.5, 1.5)),
        (("mm", "usec"), (1.5, 1.5, 8.0, 25000.0), (0.025, 8.0, 1.5, 1.5)),
        (("mm", "unknown"), (1.5, 1.5, 8.0, 25.0), (1.0, 8.0, 1.5, 1.5)),
    ],
)
def test_units_are_converted_to_mm_and_seconds(tmp_path, units, zooms, spacing):
    data = np.zeros((4, 4, 2, 3), np.float32)
    path = _save(tmp_path / "u.nii", data, _oblique_header(data.shape, zooms, np.float32, units))
    assert read_nifti(path).spacing == spacing


@pytest.mark.parametrize(
    "units, zooms, words",
    [
        ("meter", (1.5, 1.5, 10.0), "gives its voxel size as 1.5 x 1.5 x 10 metres"),
        ("micron", (1.5, 1.5, 10.0), "gives its voxel size as 1.5 x 1.5 x 10 microns"),
    ],
)
def test_implausible_voxel_sizes_in_other_units_are_refused(tmp_path, units, zooms, words):
    data = np.zeros((4, 4, 2), np.float32)
    path = _save(tmp_path / "u.nii", data, _oblique_header(data.shape, zooms, np.float32))
    h = nib.load(path).header
    h.set_xyzt_units(units)
    path = _save(tmp_path / "u.nii", data, h)
    with pytest.raises(NiftiError, match=words) as err:
        read_nifti(path)
    assert "fix the unit in its header (xyzt_units)" in str(err.value)
    _assert_one_sentence(str(err.value), "u.nii")


def test_an_undefined_unit_code_is_one_sentence(tmp_path):
    data = np.zeros((4, 4, 2), np.float32)
    h = nib.Nifti1Header()
    h["xyzt_units"] = 5  # space bits 5: no such unit (nibabel raises KeyError)
    path = _save(tmp_path / "u.nii", data, h)
    with pytest.raises(NiftiError, match=r"u\.nii has an undefined spatial unit \(code 5"):
        read_nifti(path)


def test_a_wrong_unit_cannot_ask_for_terabytes_or_an_empty_grid(tmp_path):
    """Spacing that the unit made absurd is refused when resampling to the model grid."""
    from napari_pix2rep.model.preprocess import PreprocessConfig, prepare_volume

    img = np.random.default_rng(0).normal(size=(2, 64, 64)).astype(np.float32)
    for spacing, size in [((10.0, 1500.0, 1500.0), "64000x64000"), ((10, 0.002, 0.002), "1x1")]:
        with pytest.raises(ValueError, match=f"would be {size} pixels .* check the voxel size"):
            prepare_volume(img, spacing, PreprocessConfig(), 16)
    assert prepare_volume(img, (10.0, 1.5, 1.5), PreprocessConfig(), 16).size == (64, 64)


def test_an_image_read_as_labels_is_named_as_an_image(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.permutation(np.arange(1024) % 252).reshape(16, 16, 4).astype(np.int16)
    path = _save(tmp_path / "scan.nii.gz", data, nib.Nifti1Header())
    with pytest.raises(NiftiError) as err:
        read_nifti(path, kind="labels")
    assert str(err.value) == (
        "scan.nii.gz looks like an image, not a label map (252 distinct values; a label map "
        "has at most 32)."
    )
    few = _save(tmp_path / "few.nii.gz", data % 4, nib.Nifti1Header())
    assert read_nifti(few, kind="labels").data.max() == 3


def test_the_truncation_check_stops_at_the_declared_size(tmp_path):
    """A cut far beyond what the header declares is not inflated to (nor reported)."""
    import zlib

    from napari_pix2rep.io.nifti_limits import truncation

    h = nib.Nifti1Header()
    h.set_data_shape((4, 4, 2))
    block = bytearray(h.binaryblock)
    block[344:348] = b"zzz\0"  # a bad magic: nibabel cannot identify the file
    packer = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    body = packer.compress(bytes(block) + bytes(16 << 20)) + packer.flush()
    (tmp_path / "long.nii.gz").write_bytes(body[: len(body) * 9 // 10])
    assert truncation(tmp_path / "long.nii.gz") is None
    h.set_data_shape((1024, 1024, 32))  # now the cut is within the declared data
    block[:348] = h.binaryblock[:344] + b"zzz\0"
    packer = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    body = packer.compress(bytes(block) + bytes(16 << 20)) + packer.flush()
    (tmp_path / "cut.nii.gz").write_bytes(body[: len(body) * 9 // 10])
    assert truncation(tmp_path / "cut.nii.gz") == "the gzip stream ends early"
    with pytest.raises(NiftiError, match="cut.nii.gz is truncated or corrupt: the gzip stream"):
        read_nifti(tmp_path / "cut.nii.gz")
