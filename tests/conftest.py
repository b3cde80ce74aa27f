"""Shared fixtures: the real ACDC data (skipped with a reason when absent), header checks."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
ACDC_ROOT = (REPO / "../shared/data/acdc").resolve()

#: header fields that legitimately change when the data type changes on write
DTYPE_FIELDS = ("datatype", "bitpix", "scl_slope", "scl_inter", "cal_min", "cal_max")


@pytest.fixture(autouse=True)
def _thread_count_as_chosen(monkeypatch):
    """The CLI's thread count follows the machine's load unless the user chose one
    (napari_pix2rep.model.threads); tests choose, so what they print does not depend on
    what else the machine runs (tests/model/test_threads.py covers the load rule)."""
    if not any(os.environ.get(v) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")):
        monkeypatch.setenv("OMP_NUM_THREADS", str(os.cpu_count() or 1))


@pytest.fixture(scope="session")
def acdc_root() -> Path:
    """``../shared/data/acdc/training`` (the ACDC training patients); skips when absent."""
    training = ACDC_ROOT / "training"
    if not (training / "patient001").is_dir():
        pytest.skip(f"ACDC data not found at {training} (real-data tests need ../shared)")
    return training


def headers_differ(
    a: nib.Nifti1Header, b: nib.Nifti1Header, ignore: Iterable[str] = ()
) -> dict[str, tuple]:
    """Header fields (except ``ignore``) whose values differ, NaN equal to NaN."""
    skip = set(ignore)
    out = {}
    for key in a.keys():
        if key in skip:
            continue
        va, vb = np.asarray(a[key]), np.asarray(b[key])
        same = np.array_equal(va, vb, equal_nan=va.dtype.kind in "fc" and vb.dtype.kind in "fc")
        if not same:
            out[key] = (a[key], b[key])
    return out


@pytest.fixture
def assert_same_header() -> Callable[..., None]:
    """``check(a, b, ignore=())``: every header field equal, plus affine/sform/qform/units."""

    def check(a: nib.Nifti1Header, b: nib.Nifti1Header, ignore: Iterable[str] = ()) -> None:
        diff = headers_differ(a, b, ignore)
        assert not diff, f"header fields differ: {diff}"
        assert a.get_sform(coded=True)[1] == b.get_sform(coded=True)[1]
        assert a.get_qform(coded=True)[1] == b.get_qform(coded=True)[1]
        np.testing.assert_array_equal(a.get_best_affine(), b.get_best_affine())
        np.testing.assert_array_equal(a.get_sform(), b.get_sform())
        np.testing.assert_array_equal(a.get_qform(), b.get_qform())
        assert a.get_xyzt_units() == b.get_xyzt_units()
        assert a.get_zooms() == b.get_zooms()
        assert a.get_data_shape() == b.get_data_shape()
        assert a.get_dim_info() == b.get_dim_info()

    return check


@pytest.fixture(scope="session")
def phantom3d():
    """A 3D phantom (8 slices, 96x96) with its truth."""
    from napari_pix2rep.evaluation.phantom import make_phantom

    return make_phantom(n_slices=8, size=(96, 96), seed=3)


@pytest.fixture(scope="session")
def tiny_backbone_file(tmp_path_factory) -> Path:
    """A ``tiny`` backbone briefly pretrained with Pix2Rep on phantoms (about 10 s)."""
    import torch

    from napari_pix2rep.evaluation.phantom import make_phantom
    from napari_pix2rep.model.preprocess import PreprocessConfig
    from napari_pix2rep.pretrain.config import PretrainConfig
    from napari_pix2rep.pretrain.run import Pretrainer
    from napari_pix2rep.pretrain.slices import SliceBank

    torch.manual_seed(0)
    vols = [make_phantom(n_slices=8, size=(96, 96), seed=s) for s in (10, 11, 12)]
    bank = SliceBank.from_arrays([(v.image, v.spacing) for v in vols], PreprocessConfig())
    out = tmp_path_factory.mktemp("models") / "tiny_backbone.pt"
    cfg = PretrainConfig(preset="tiny", steps=60, batch_size=8, crop=64, checkpoint_every=1000)
    Pretrainer(bank, cfg, out=out, device="cpu").run()
    return out
