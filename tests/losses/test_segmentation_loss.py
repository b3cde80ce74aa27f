import pytest
import torch

from napari_pix2rep.core.classes import IGNORE
from napari_pix2rep.losses.segmentation import balanced_class_weights, dice_ce_loss


def test_confident_correct_prediction_costs_almost_nothing():
    target = torch.tensor([[0, 1, 2, 2]])
    logits = torch.nn.functional.one_hot(target, 3).permute(0, 2, 1).float() * 50
    assert dice_ce_loss(logits, target).item() == pytest.approx(0.0, abs=1e-3)


def test_uniform_prediction_has_known_cross_entropy():
    target = torch.tensor([[0, 1, 2, 2]])
    logits = torch.zeros(1, 3, 4)
    loss = dice_ce_loss(logits, target, dice_weight=0.0)
    assert loss.item() == pytest.approx(torch.log(torch.tensor(3.0)).item(), rel=1e-5)


def test_ignored_pixels_do_not_count():
    target = torch.tensor([[0, 1, IGNORE, IGNORE]])
    logits = torch.randn(1, 3, 4)
    changed = logits.clone()
    changed[..., 2:] = 100.0
    assert dice_ce_loss(logits, target).item() == pytest.approx(
        dice_ce_loss(changed, target).item()
    )


def test_balanced_weights():
    target = torch.tensor([0] * 90 + [1] * 10 + [IGNORE] * 5)
    w = balanced_class_weights(target, 3, power=1.0)
    assert w[2] == 0 and w[1] / w[0] == pytest.approx(9.0)
    assert w[:2].mean() == pytest.approx(1.0)


def test_all_ignored_is_an_error():
    with pytest.raises(ValueError, match="No labelled"):
        dice_ce_loss(torch.zeros(1, 2, 3), torch.full((1, 3), IGNORE))
