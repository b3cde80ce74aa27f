import math

import pytest
import torch

from napari_pix2rep.losses.pixel_ntxent import pixel_ntxent


def test_identical_one_hot_views_give_the_closed_form_minimum():
    n, tau = 6, 0.5
    z = torch.eye(n)
    # positive similarity 1/tau, 2n-2 orthogonal negatives at 0
    expected = math.log(1 + (2 * n - 2) * math.exp(-1 / tau))
    assert pixel_ntxent(z, z.clone(), tau).item() == pytest.approx(expected, rel=1e-6)


def test_permuted_pairs_cost_more():
    z = torch.eye(6)
    aligned = pixel_ntxent(z, z.clone())
    shuffled = pixel_ntxent(z, z[torch.tensor([1, 2, 3, 4, 5, 0])])
    assert shuffled > aligned + 1.0


def test_scale_invariant_and_gradients_reach_both_views():
    torch.manual_seed(0)
    z1 = torch.randn(32, 8, requires_grad=True)
    z2 = torch.randn(32, 8, requires_grad=True)
    loss = pixel_ntxent(z1, z2)
    loss.backward()
    assert z1.grad.abs().sum() > 0 and z2.grad.abs().sum() > 0
    assert pixel_ntxent(3 * z1, 0.5 * z2).item() == pytest.approx(loss.item(), rel=1e-5)


def test_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="equal shape"):
        pixel_ntxent(torch.zeros(4, 3), torch.zeros(5, 3))
