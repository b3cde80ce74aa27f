"""The synthetic cardiac phantom: determinism, anatomy, cine contraction, NIfTI export."""

from __future__ import annotations

import time

import nibabel as nib
import numpy as np
import pytest

from napari_pix2rep.evaluation.phantom import (
    LV,
    MYO,
    RV,
    contraction,
    make_phantom,
    write_phantom_dataset,
)
from napari_pix2rep.io.nifti import is_label_file, read_nifti
from napari_pix2rep.io.nifti_write import write_nifti


def test_shapes_dtypes_and_spacing():
    ph = make_phantom()
    assert ph.image.shape == ph.labels.shape == (10, 160, 160)
    assert ph.image.dtype == np.float32 and ph.labels.dtype == np.uint8
    assert ph.spacing == (10.0, 1.5, 1.5) and not ph.is_4d
    cine = make_phantom(n_slices=6, size=(96, 112), n_frames=9, spacing=(8, 1.25, 1.25))
    assert cine.image.shape == (9, 6, 96, 112) and cine.is_4d
    assert cine.spacing[1:] == (8.0, 1.25, 1.25) and 0 < cine.spacing[0] < 1
    assert cine.es_frame == 3


def test_deterministic_and_seeded():
    a, b, c = make_phantom(seed=7), make_phantom(seed=7), make_phantom(seed=8)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.affine, b.affine)
    assert not np.array_equal(a.labels, c.labels)  # position / size jitter


def test_anatomy_and_contrast():
    ph = make_phantom(seed=1)
    lab, img = ph.labels, ph.image
    assert set(np.unique(lab)) == {0, RV, MYO, LV}
    blood, myo = img[lab == LV].mean(), img[lab == MYO].mean()
    assert 0.8 < blood < 1.3 and 0.2 < myo < 0.5 and blood > 2 * myo
    assert img[:, :3, :3].mean() < 0.1  # air in the corners
    assert img[lab == RV].mean() > 2 * myo
    # base has RV and LV cavity; the RV disappears before the apex
    assert (lab[0] == RV).sum() > 200 and (lab[0] == LV).sum() > 500
    assert (lab[-1] == RV).sum() == 0
    lv_area = [(lab[z] == LV).sum() for z in range(10)]
    assert lv_area[0] > lv_area[5] > lv_area[-1]
    # myocardial wall thickness at mid-ventricle: about 8-12 mm
    z = 3
    ring = (lab[z] == MYO).sum() * 1.5 * 1.5
    r_in = np.sqrt((lab[z] == LV).sum() * 2.25 / np.pi)
    thickness = np.sqrt(ring / np.pi + r_in**2) - r_in
    assert 6.0 < thickness < 13.0
    # RV and LV do not touch (the septum is myocardium)
    assert not np.any((lab[z] == RV) & np.roll(lab[z] == LV, 1, axis=1))


def test_cine_contracts_and_myocardium_thickens():
    cine = make_phantom(n_frames=12, seed=2)
    es = cine.es_frame
    assert es == 4
    lv = [(cine.labels[t] == LV).sum() for t in range(12)]
    myo = [(cine.labels[t] == MYO).sum() for t in range(12)]
    rv = [(cine.labels[t] == RV).sum() for t in range(12)]
    assert int(np.argmin(lv)) == es and int(np.argmax(lv)) == 0
    ef = 1 - lv[es] / lv[0]
    assert 0.35 < ef < 0.75
    assert rv[es] < rv[0]
    assert max(myo) / min(myo) < 1.1  # myocardial volume is (nearly) conserved
    assert contraction(0, 12, 4) == 0.0 and contraction(4, 12, 4) == 1.0


def test_fast():
    make_phantom()
    best = min(_time(make_phantom) for _ in range(3))
    assert best < 0.2, f"make_phantom took {best:.3f} s"


def _time(func) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def test_header_and_nifti_export(tmp_path):
    ph = make_phantom(n_slices=5, size=(48, 64), n_frames=4, seed=4)
    h = ph.header
    assert h.get_sform(coded=True)[1] == 1 and h.get_qform(coded=True)[1] == 1
    assert h.get_xyzt_units() == ("mm", "sec")
    assert h.get_data_shape() == (64, 48, 5, 4)
    np.testing.assert_allclose(h.get_best_affine(), ph.affine, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(ph.affine[:3, :3], axis=0), [1.5, 1.5, 10.0])
    assert not np.allclose(ph.affine[:3, :3], np.diag(np.diag(ph.affine[:3, :3])))  # oblique
    out = write_nifti(tmp_path / "p.nii.gz", ph.image, ph.to_volume("image"), kind="image")
    back = read_nifti(out)
    np.testing.assert_array_equal(back.data, ph.image)
    assert back.spacing == pytest.approx(ph.spacing)
    lab = write_nifti(tmp_path / "p_gt.nii.gz", ph.labels, ph.to_volume("labels"))
    np.testing.assert_array_equal(read_nifti(lab).data, ph.labels)
    frame = ph.frame(0)
    assert frame.image.shape == (5, 48, 64) and frame.spacing == ph.spacing[1:]


def test_write_phantom_dataset(tmp_path):
    paths = write_phantom_dataset(tmp_path / "data", n_cases=2, seed=1, n_slices=4, size=(48, 48))
    names = sorted(p.name for p in paths)
    assert names == [
        "case001_frame01.nii.gz",
        "case001_frame01_gt.nii.gz",
        "case001_frame05.nii.gz",
        "case001_frame05_gt.nii.gz",
        "case002_frame01.nii.gz",
        "case002_frame01_gt.nii.gz",
        "case002_frame05.nii.gz",
        "case002_frame05_gt.nii.gz",
    ]
    assert all(p.parent.name in ("case001", "case002") for p in paths)
    info = (tmp_path / "data/case001/Info.cfg").read_text()
    assert "ED: 1" in info and "ES: 5" in info
    ed = read_nifti(tmp_path / "data/case001/case001_frame01.nii.gz")
    ed_gt = read_nifti(tmp_path / "data/case001/case001_frame01_gt.nii.gz")
    es_gt = read_nifti(tmp_path / "data/case001/case001_frame05_gt.nii.gz")
    assert not ed.is_labels and ed_gt.is_labels and is_label_file(ed_gt.path, ed_gt)
    assert ed.shape == ed_gt.shape == (4, 48, 48)
    assert (es_gt.data == LV).sum() < (ed_gt.data == LV).sum()
    h1 = nib.load(ed.path).header
    h2 = nib.load(ed_gt.path).header
    np.testing.assert_array_equal(h1.get_sform(), h2.get_sform())
    assert h1.get_zooms() == h2.get_zooms()
    again = write_phantom_dataset(tmp_path / "again", n_cases=2, seed=1, n_slices=4, size=(48, 48))
    np.testing.assert_array_equal(read_nifti(again[0]).data, ed.data)
