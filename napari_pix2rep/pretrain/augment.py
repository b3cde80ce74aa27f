"""Batched augmentations for Pix2Rep, run on the training device.

Intensity transforms act on each view independently; one random affine per slice (the
spatial transform phi) warps view 2 and, identically, the view-1 feature map, so that
the two dense feature maps are pixel-aligned: the loss asks ``f(phi . v) = phi . f(v)``.

Conventions: images and feature maps are ``(N, C, H, W)``; an affine is ``theta`` of
shape ``(N, 2, 3)`` in ``F.affine_grid`` form (output normalised coordinates -> input
normalised coordinates, ``align_corners=False``). Default ranges follow the authors'
code.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch.nn import functional as F


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of the Pix2Rep augmentations."""

    noise_p: float = 0.3
    noise_std: float = 0.5  # max sigma, in units of the (standardised) intensity
    blur_p: float = 0.5
    blur_sigma: float = 1.3  # max sigma, pixels
    gamma_p: float = 0.9
    gamma_log: float = 0.05  # log(gamma) ~ U(-g, g)
    bias_p: float = 0.75
    bias_coef: float = 0.9  # polynomial coefficients ~ U(-c, c)
    bias_order: int = 3
    invert_p: float = 0.35
    rotation_deg: float = 90.0
    scale_min: float = 0.33
    scale_max: float = 0.95
    flip_p: float = 0.7

    def to_dict(self) -> dict:
        return asdict(self)


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator, device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen, device=device)


def _coin(n: int, p: float, gen: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=device) < p


def _bias_basis(order: int, h: int, w: int, device) -> torch.Tensor:
    """Monomials ``x^i y^j`` (i + j <= order) on [-1, 1]^2: ``(T, H, W)``."""
    y = torch.linspace(-1, 1, h, device=device)[:, None]
    x = torch.linspace(-1, 1, w, device=device)[None, :]
    terms = [x**i * y**j for i in range(order + 1) for j in range(order + 1 - i)]
    return torch.stack([t.expand(h, w) for t in terms])


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each image of ``(N, C, H, W)`` (all its channels alike) with its own sigma
    ``(N,)`` (0 leaves it as is)."""
    n, c = x.shape[0], x.shape[1]
    radius = max(1, math.ceil(3 * float(sigma.max())))
    k = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    s = sigma.to(x.dtype).clamp_min(1e-3)[:, None]
    kernel = torch.exp(-0.5 * (k[None] / s) ** 2)
    kernel = kernel / kernel.sum(1, keepdim=True)  # sigma -> 0 gives a delta
    kernel = kernel.repeat_interleave(c, dim=0)  # (N C, taps): one per channel image
    xs = x.reshape(1, n * c, *x.shape[-2:])
    xs = F.pad(xs, (radius, radius, radius, radius), mode="reflect")
    xs = F.conv2d(xs, kernel.view(n * c, 1, -1, 1), groups=n * c)
    xs = F.conv2d(xs, kernel.view(n * c, 1, 1, -1), groups=n * c)
    return xs.reshape_as(x)


def intensity_augment(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """Random bias field, gamma, inversion, blur and noise: ``(N, C, H, W)`` -> same shape
    (one draw per image, alike on all its channels but the noise).

    Bias, gamma and inversion act on each slice rescaled to [0, 1] and are mapped back to
    its original range, so standardised inputs stay standardised-looking.
    """
    n, _, h, w = x.shape
    dev = x.device
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    span = (x.amax(dim=(1, 2, 3), keepdim=True) - lo).clamp_min(1e-6)
    u = (x - lo) / span

    basis = _bias_basis(cfg.bias_order, h, w, dev)
    coef = _uniform(n * basis.shape[0], -cfg.bias_coef, cfg.bias_coef, gen, dev)
    coef = coef.view(n, -1) * _coin(n, cfg.bias_p, gen, dev)[:, None]
    u = u * torch.exp(torch.einsum("nt,thw->nhw", coef, basis))[:, None]

    log_gamma = _uniform(n, -cfg.gamma_log, cfg.gamma_log, gen, dev)
    log_gamma = log_gamma * _coin(n, cfg.gamma_p, gen, dev)
    u = u.clamp_min(0).pow(torch.exp(log_gamma).view(n, 1, 1, 1))

    invert = _coin(n, cfg.invert_p, gen, dev).view(n, 1, 1, 1)
    u = torch.where(invert, 1 - u, u)
    x = lo + u * span

    sigma = _uniform(n, 0, cfg.blur_sigma, gen, dev) * _coin(n, cfg.blur_p, gen, dev)
    if bool((sigma > 0).any()):
        x = gaussian_blur(x, sigma)

    std = _uniform(n, 0, cfg.noise_std, gen, dev) * _coin(n, cfg.noise_p, gen, dev)
    noise = torch.randn(x.shape, generator=gen, device=dev, dtype=x.dtype)
    return x + noise * std.view(n, 1, 1, 1).to(x.dtype)


def random_affine(n: int, cfg: AugmentConfig, gen: torch.Generator, device) -> torch.Tensor:
    """One random spatial transform per slice: ``theta`` of shape ``(n, 2, 3)``.

    Rotation U(-r, r), a zoom-crop of scale U(smin, smax) (the output shows that fraction
    of the field of view) at a random offset that keeps the crop centre inside, and a
    horizontal or vertical flip with probability ``flip_p``.
    """
    angle = _uniform(n, -1, 1, gen, device) * math.radians(cfg.rotation_deg)
    scale = _uniform(n, cfg.scale_min, cfg.scale_max, gen, device)
    flip = _coin(n, cfg.flip_p, gen, device)
    horizontal = _coin(n, 0.5, gen, device)
    fx = torch.where(flip & horizontal, -1.0, 1.0)
    fy = torch.where(flip & ~horizontal, -1.0, 1.0)
    offset = _uniform(2 * n, -1, 1, gen, device).view(n, 2) * (1 - scale)[:, None]
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(n, 2, 3, device=device)
    theta[:, 0, 0] = scale * cos * fx
    theta[:, 0, 1] = -scale * sin * fy
    theta[:, 1, 0] = scale * sin * fx
    theta[:, 1, 1] = scale * cos * fy
    theta[:, :, 2] = offset
    return theta


def warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Resample ``(N, C, H, W)`` through ``theta`` ``(N, 2, 3)`` (bilinear, zeros outside)."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def valid_mask(theta: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(N, H, W)`` bool: output pixels whose bilinear source lies wholly inside the image.

    A pixel is valid when its source point is within the outermost pixel centres, so
    neither the warped image nor the warped features mix in the zero padding.
    """
    h, w = size
    grid = F.affine_grid(theta.float(), [theta.shape[0], 1, h, w], align_corners=False)
    return (grid[..., 0].abs() <= 1 - 1 / w) & (grid[..., 1].abs() <= 1 - 1 / h)


#: Fine-tuning augmentation (segmentation), chosen on the validation patients
#: (docs/benchmarks.md, "Fine-tuning recipe"): any in-plane rotation, zoom from 0.7 to 1.4,
#: mirrored crops half the time, stronger bias field, gamma, blur and noise; no inversion
#: (MR contrast is fixed). Its spatial fields are applied by :mod:`napari_pix2rep.segment.crops`.
FINETUNE_AUGMENT = AugmentConfig(
    noise_p=0.3,
    noise_std=0.3,
    blur_p=0.3,
    blur_sigma=1.0,
    gamma_p=0.7,
    gamma_log=0.4,
    bias_p=0.5,
    bias_coef=0.5,
    invert_p=0.0,
    rotation_deg=180.0,
    scale_min=0.7,
    scale_max=1.4,
    flip_p=0.5,
)
