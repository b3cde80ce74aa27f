"""Fine-tuning crops (napari_pix2rep.segment.crops)."""

from dataclasses import replace

import pytest
import torch

from napari_pix2rep.core.classes import IGNORE
from napari_pix2rep.pretrain.augment import AugmentConfig
from napari_pix2rep.segment.crops import crop_grid, sample_crops

#: No spatial change at all: a crop is the window of the slice around its centre.
IDENTITY = AugmentConfig(rotation_deg=0.0, scale_min=1.0, scale_max=1.0, flip_p=0.0)


def _slice(h=20, w=24):
    x = torch.arange(h * w, dtype=torch.float32).reshape(1, h, w)
    t = torch.zeros(h, w, dtype=torch.long)
    return x, t


def test_identity_crop_is_the_window_around_the_structure():
    x, t = _slice()
    t[7, 9] = 2  # the only structure pixel: every crop is centred on it
    xs, ts = sample_crops([x], [t], 3, 5, IDENTITY, torch.Generator().manual_seed(0), 1.0)
    assert xs.shape == (3, 1, 5, 5) and ts.shape == (3, 5, 5)
    for xc, tc in zip(xs, ts):
        torch.testing.assert_close(xc, x[:, 5:10, 7:12])
        assert tc[2, 2] == 2 and int((tc > 0).sum()) == 1


def test_outside_the_slice_is_unlabelled_and_the_image_repeats_its_edge():
    x, t = _slice()
    t[0, 0] = 1
    t[5, 5] = IGNORE  # unlabelled stays unlabelled
    xs, ts = sample_crops([x], [t], 1, 5, IDENTITY, torch.Generator().manual_seed(0), 1.0)
    # centred on (0, 0): rows and columns -2, -1 lie outside
    assert (ts[0, :2] == IGNORE).all() and (ts[0, :, :2] == IGNORE).all()
    assert ts[0, 2, 2] == 1 and (ts[0, 2:, 2:][1:, 1:] == 0).all()
    torch.testing.assert_close(xs[0, 0, 0, 0], x[0, 0, 0])  # border padding


def test_mirror_flips_left_and_right():
    x, t = _slice()
    t[7, 9] = 1
    aug = replace(IDENTITY, flip_p=1.0)
    xs, _ = sample_crops([x], [t], 1, 5, aug, torch.Generator().manual_seed(0), 1.0)
    torch.testing.assert_close(xs[0], x[:, 5:10, 7:12].flip(-1))


@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_rotation_and_scale_keep_the_grid_a_similarity(scale):
    aug = AugmentConfig(rotation_deg=180.0, scale_min=scale, scale_max=scale, flip_p=0.0)
    h = w = 64
    for seed in range(5):
        grid = crop_grid((30.0, 33.0), (h, w), 9, aug, torch.Generator().manual_seed(seed))
        px = torch.stack(
            [(grid[0, ..., 0] + 1) * w / 2 - 0.5, (grid[0, ..., 1] + 1) * h / 2 - 0.5]
        )
        step_x = (px[:, :, 1:] - px[:, :, :-1]).norm(dim=0)
        step_y = (px[:, 1:, :] - px[:, :-1, :]).norm(dim=0)
        torch.testing.assert_close(step_x, torch.full_like(step_x, scale))
        torch.testing.assert_close(step_y, torch.full_like(step_y, scale))
        # the centre of an odd crop is the requested centre (column 33, row 30)
        torch.testing.assert_close(px[:, 4, 4], torch.tensor([33.0, 30.0]))


def test_elastic_warp_is_smooth_and_bounded():
    aug = IDENTITY
    grid = crop_grid((32.0, 32.0), (64, 64), 33, aug, torch.Generator().manual_seed(0), 2.0)
    base = crop_grid((32.0, 32.0), (64, 64), 33, aug, torch.Generator().manual_seed(0))
    shift = (grid - base)[0] * 32  # normalised -> pixels
    assert 0.1 < shift.abs().max() < 12
    # neighbours move together (smooth field): far less than the shift itself
    assert (shift[1:] - shift[:-1]).abs().max() < shift.abs().max() / 3


def test_most_crops_hold_heart_when_asked_to():
    x, t = _slice(64, 64)
    t[40:44, 10:14] = 3
    gen = torch.Generator().manual_seed(1)
    _, ts = sample_crops([x], [t], 40, 9, IDENTITY, gen, foreground_p=0.9)
    with_heart = sum(bool((c == 3).any()) for c in ts)
    assert with_heart >= 30
    _, ts = sample_crops([x], [t], 40, 9, IDENTITY, gen, foreground_p=0.0)
    assert sum(bool((c == 3).any()) for c in ts) < 15
