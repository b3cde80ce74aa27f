"""Tests of napari_pix2rep.layer_meta."""

from __future__ import annotations

from napari_pix2rep.layer_meta import layer_spacing, volume_metadata
from napari_pix2rep.phantom import make_phantom


def test_layer_spacing_prefers_nifti_metadata():
    ph = make_phantom(n_slices=3, size=(32, 32), seed=1)
    meta = volume_metadata(ph.to_volume())
    assert layer_spacing(meta, (1, 1, 1), 3) == (10.0, 1.5, 1.5)
    assert layer_spacing({}, (5.0, 2.0, 2.0), 3) == (5.0, 2.0, 2.0)
    assert layer_spacing(None, (0.1, 5.0, 2.0, 2.0), 4) == (0.1, 5.0, 2.0, 2.0)
