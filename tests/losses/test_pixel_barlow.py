import pytest
import torch

from napari_pix2rep.losses.pixel_barlow import pixel_barlow


def _decorrelated():
    # columns with mean 0, std 1 (biased) and orthogonal: C = I exactly
    return torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])


def test_identical_decorrelated_views_give_zero():
    z = _decorrelated()
    assert pixel_barlow(z, z.clone()).item() == pytest.approx(0.0, abs=1e-6)


def test_invariant_to_per_dimension_affine_changes():
    z = _decorrelated()
    assert pixel_barlow(z, 3 * z + 7).item() == pytest.approx(0.0, abs=1e-6)


def test_permuted_pairs_cost_more_and_known_value():
    z = _decorrelated()
    # swap pixels 0<->1: dim 0 unchanged (C00 = 1), dim 1 flips sign pairwise -> C11 = 0
    perm = z[torch.tensor([1, 0, 2, 3])]
    # C01 = mean(z[:,0] * perm[:,1]) = (1*-1 + 1*1 + -1*1 + -1*-1)/4 = 0; C10 likewise 0
    assert pixel_barlow(z, perm, lambd=0.0).item() == pytest.approx(1.0, abs=1e-5)


def test_off_diagonal_weighted_by_lambda():
    torch.manual_seed(0)
    a = torch.randn(256, 4)
    z1 = torch.cat([a, a[:, :1]], dim=1)  # a duplicated dimension: correlated
    on_only = pixel_barlow(z1, z1, lambd=0.0)
    both = pixel_barlow(z1, z1, lambd=1.0)
    assert on_only.item() == pytest.approx(0.0, abs=1e-4)
    assert both.item() > 1.0


def test_gradients_reach_both_views():
    torch.manual_seed(0)
    z1 = torch.randn(64, 8, requires_grad=True)
    z2 = torch.randn(64, 8, requires_grad=True)
    pixel_barlow(z1, z2).backward()
    assert z1.grad.abs().sum() > 0 and z2.grad.abs().sum() > 0
