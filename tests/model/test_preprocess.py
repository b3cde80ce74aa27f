from dataclasses import replace

import numpy as np
import pytest
import torch

from napari_pix2rep.model.preprocess import (
    PreprocessConfig,
    model_size,
    normalize_intensity,
    pad_to_multiple,
    prepare_volume,
    to_native,
    unpad,
)


def test_normalisation_clips_and_standardises():
    v = np.random.default_rng(0).normal(100, 20, (4, 32, 32)).astype(np.float32)
    v[0, 0, 0] = 1e6  # an outlier is clipped away
    out = normalize_intensity(v)
    assert out.dtype == np.float32
    assert abs(out.mean()) < 1e-4 and out.std() == pytest.approx(1, abs=1e-3)
    assert out.max() < 5


def test_normalisation_of_a_constant_volume_is_zero():
    assert not normalize_intensity(np.full((2, 4, 4), 7.0)).any()


def test_model_size_keeps_the_field_of_view():
    cfg = PreprocessConfig(target_spacing=1.5)
    assert model_size((200, 100), (0.75, 3.0), cfg) == (100, 200)
    assert model_size((37, 41), (1.0, 1.0), PreprocessConfig(target_spacing=None)) == (37, 41)


def test_padding_round_trip():
    x = torch.randn(2, 1, 37, 50)
    padded, pads = pad_to_multiple(x, 16)
    assert padded.shape[-2:] == (48, 64)
    torch.testing.assert_close(unpad(padded, pads), x)


def test_resampling_inverse_lands_on_the_native_grid():
    # a smooth map survives the round trip native -> model grid -> native
    z, h, w = 3, 90, 70
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    img = np.stack([np.sin(3 * yy + k) + np.cos(2 * xx) for k in range(z)]).astype(np.float32)
    prepared = prepare_volume(img, (8.0, 1.0, 1.2), PreprocessConfig(target_spacing=1.6), 16)
    assert prepared.size == (56, 52) and prepared.x.shape[-2:] == (64, 64)
    back = to_native(prepared.x, prepared)[:, 0].numpy()
    ref = normalize_intensity(img)
    assert back.shape == img.shape
    assert np.abs(back - ref)[:, 4:-4, 4:-4].max() < 0.05


def test_resampling_does_not_shift_a_structure():
    # the centre of mass of a blob stays put through the round trip (no half-pixel shift)
    img = np.zeros((1, 81, 81), np.float32)
    img[0, 30:41, 50:61] = 1
    prepared = prepare_volume(img, (5.0, 1.0, 1.0), PreprocessConfig(target_spacing=2.3), 16)
    back = to_native(prepared.x, prepared)[0, 0].numpy()
    back = back - back.min()
    cy = (back.sum(1) * np.arange(81)).sum() / back.sum()
    cx = (back.sum(0) * np.arange(81)).sum() / back.sum()
    assert cy == pytest.approx(35, abs=0.3) and cx == pytest.approx(55, abs=0.3)


def test_4d_frames_are_normalised_separately():
    a = np.random.default_rng(1).random((2, 3, 16, 16)).astype(np.float32)
    a[1] *= 100
    prepared = prepare_volume(a, (1.0, 5.0, 1.5, 1.5), PreprocessConfig(target_spacing=None))
    x = prepared.x[:, 0].reshape(2, 3, 16, 16)
    assert float(x[0].std()) == pytest.approx(float(x[1].std()), rel=1e-3)


def test_context_stacks_each_slice_with_its_neighbours_within_its_frame():
    # slice k of frame t holds the constant 10 t + k (plus a ramp so it normalises)
    t, z = 2, 4
    ramp = np.linspace(0, 1, 16 * 16, dtype=np.float32).reshape(16, 16)
    data = np.stack([[ramp + 10 * f + k for k in range(z)] for f in range(t)])
    cfg = PreprocessConfig(target_spacing=None, clip_low=0, clip_high=100, context=1)
    plain = prepare_volume(data, (1, 5, 1, 1), replace(cfg, context=0)).x  # (t z, 1, h, w)
    wide = prepare_volume(data, (1, 5, 1, 1), cfg).x
    assert cfg.channels == 3 and wide.shape == (t * z, 3, 16, 16)
    for f in range(t):
        for k in range(z):
            near = [min(max(k + d, 0), z - 1) for d in (-1, 0, 1)]  # edges repeat themselves
            for ch, j in enumerate(near):
                torch.testing.assert_close(wide[f * z + k, ch], plain[f * z + j, 0])
    with pytest.raises(ValueError, match="context"):
        PreprocessConfig(context=9)
    assert PreprocessConfig.from_dict({"target_spacing": 1.5}).context == 0  # older files
