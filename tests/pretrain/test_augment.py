"""Augmentations and the equivariance that Pix2Rep's alignment relies on."""

import torch
from torch import nn

from napari_pix2rep.pretrain import augment
from napari_pix2rep.pretrain.augment import AugmentConfig
from napari_pix2rep.pretrain.config import PretrainConfig
from napari_pix2rep.pretrain.objectives import Pix2RepObjective, sample_aligned_pixels


def _smooth_images(n=4, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, size // 4, size // 4, generator=g)
    return nn.functional.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)


class Pointwise(nn.Module):
    """A 'backbone' that acts pixel by pixel: f(phi . v) = phi . f(v) holds exactly."""

    def __init__(self):
        super().__init__()
        self.config = type("C", (), {"out_channels": 3})()

    def forward(self, x):
        return torch.cat([x, torch.tanh(x), x**2], dim=1)


def _theta(n, seed=1):
    g = torch.Generator().manual_seed(seed)
    cfg = AugmentConfig(rotation_deg=40, scale_min=0.6, scale_max=0.9, flip_p=0.5)
    return augment.random_affine(n, cfg, g, "cpu")


def test_identity_affine_changes_nothing():
    x = _smooth_images()
    eye = torch.eye(2, 3).expand(4, 2, 3)
    torch.testing.assert_close(augment.warp(x, eye), x, atol=1e-5, rtol=0)
    assert augment.valid_mask(eye, (32, 32))[:, 1:-1, 1:-1].all()


def test_pointwise_backbone_is_equivariant_on_valid_pixels():
    x = _smooth_images()
    theta = _theta(4)
    obj = Pix2RepObjective(Pointwise(), PretrainConfig())
    f1w, f2, valid = obj.aligned_features(x, augment.warp(x, theta), theta)
    assert valid.float().mean() > 0.3
    err = (f1w - f2).abs().permute(1, 0, 2, 3)[:, valid]  # (channels, valid pixels)
    assert err[0].max() < 1e-4  # the linear channel: exact up to float error
    # the nonlinear channels differ only by interpolation error
    assert err[1:].mean() < 0.05


def test_a_wrong_warp_breaks_the_alignment():
    x = _smooth_images()
    theta = _theta(4)
    wrong = theta.clone()
    wrong[:, :, :2] = theta[:, :, :2].transpose(1, 2)
    obj = Pix2RepObjective(Pointwise(), PretrainConfig())
    f1w, f2, valid = obj.aligned_features(x, augment.warp(x, wrong), theta)
    err = (f1w - f2).abs()[:, 0][valid]
    assert err.mean() > 0.2


def test_valid_mask_matches_the_field_of_view():
    theta = torch.tensor([[[1.0, 0.0, 0.5], [0.0, 1.0, 0.0]]])  # shift right by a quarter
    valid = augment.valid_mask(theta, (16, 16))[0]
    assert valid[:, :6].all() and not valid[:, -3:].any()


def test_masked_pixels_do_not_affect_the_sampled_pairs():
    g = torch.Generator().manual_seed(0)
    f1, f2 = torch.randn(2, 2, 4, 8, 8).unbind(0)
    valid = torch.zeros(2, 8, 8, dtype=torch.bool)
    valid[:, 2:6, 2:6] = True
    a = sample_aligned_pixels(f1, f2, valid, None, g)
    f1b, f2b = f1.clone(), f2.clone()
    f1b[~valid.unsqueeze(1).expand_as(f1)] = 1e6
    f2b[~valid.unsqueeze(1).expand_as(f2)] = -1e6
    b = sample_aligned_pixels(f1b, f2b, valid, None, g)
    torch.testing.assert_close(a, b)
    assert a[0].shape == (2 * 16, 4)


def test_intensity_augment_is_seeded_and_keeps_shape():
    x = _smooth_images()
    cfg = AugmentConfig(noise_p=1, blur_p=1, gamma_p=1, bias_p=1, invert_p=0.5)
    a = augment.intensity_augment(x, cfg, torch.Generator().manual_seed(3))
    b = augment.intensity_augment(x, cfg, torch.Generator().manual_seed(3))
    assert a.shape == x.shape and torch.equal(a, b)
    assert not torch.allclose(a, x)


def test_blur_with_zero_sigma_is_identity_and_blur_smooths():
    x = torch.randn(2, 1, 16, 16)
    out = augment.gaussian_blur(x, torch.tensor([0.0, 2.0]))
    torch.testing.assert_close(out[0], x[0], atol=1e-4, rtol=0)
    assert out[1].std() < x[1].std()


def test_random_affine_ranges():
    g = torch.Generator().manual_seed(0)
    cfg = AugmentConfig()
    theta = augment.random_affine(500, cfg, g, "cpu")
    scale = torch.linalg.det(theta[:, :, :2]).abs().sqrt()
    assert scale.min() >= cfg.scale_min - 1e-5 and scale.max() <= cfg.scale_max + 1e-5
    flipped = (torch.linalg.det(theta[:, :, :2]) < 0).float().mean()
    assert 0.6 < flipped < 0.8


def test_blur_and_intensity_augment_treat_every_channel_alike():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 20, 20, generator=gen)
    sigma = torch.tensor([0.0, 1.0, 2.0, 0.5])
    y = augment.gaussian_blur(x, sigma)
    for c in range(3):  # channel by channel, the one-channel blur
        one = augment.gaussian_blur(x[:, c : c + 1].contiguous(), sigma)
        torch.testing.assert_close(y[:, c : c + 1], one)
    torch.testing.assert_close(y[0], x[0])  # sigma 0 leaves it alone
    same = x[:, :1].repeat(1, 3, 1, 1)  # three equal channels stay equal without noise
    cfg = AugmentConfig(noise_p=0.0)
    out = augment.intensity_augment(same, cfg, torch.Generator().manual_seed(1))
    torch.testing.assert_close(out[:, 1], out[:, 0])
    torch.testing.assert_close(out[:, 2], out[:, 0])
