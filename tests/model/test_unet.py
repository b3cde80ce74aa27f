"""The U-Net's hypercolumn output and the segmenter's folded head (known answers: the
plain upsample-concatenate-project computation)."""

import pytest
import torch
from torch.nn import functional as F

from napari_pix2rep.model.nets.unet import UNet, UNetConfig, preset, project_levels
from napari_pix2rep.model.segmenter import Segmenter


def _concatenated(net: UNet, x: torch.Tensor) -> torch.Tensor:
    """The hypercolumn as written down: upsample, concatenate, then the 1x1 conv."""
    levels = net.decoder_levels(x)
    size = levels[-1].shape[-2:]
    column = [F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in levels]
    return net.out(torch.cat(column, dim=1))


def test_hypercolumn_levels_and_channels():
    net = UNet(preset("small")).eval()
    with torch.no_grad():
        levels = net.decoder_levels(torch.zeros(1, 1, 64, 64))
    assert [tuple(f.shape[1:]) for f in levels] == [(64, 16, 16), (32, 32, 32), (16, 64, 64)]
    assert net.out.in_channels == 112


@pytest.mark.parametrize(
    "config",
    [preset("tiny"), preset("small"), UNetConfig(base_channels=4, depth=3, hypercolumn=0)],
    ids=["tiny", "small", "no-hypercolumn"],
)
def test_projected_hypercolumn_equals_the_concatenation(config):
    torch.manual_seed(0)
    net = UNet(config).eval()
    x = torch.randn(2, 1, 48, 64)
    with torch.no_grad():
        projected = project_levels(net.decoder_levels(x), net.out.weight, net.out.bias)
        torch.testing.assert_close(projected, _concatenated(net, x), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(net(x), _concatenated(net, x))


def test_segmenter_folds_its_head_into_the_backbone_output():
    torch.manual_seed(1)
    seg = Segmenter(UNet(preset("tiny")), ("background", "a", "b"))
    torch.nn.init.normal_(seg.head.conv.weight)
    torch.nn.init.normal_(seg.head.conv.bias)
    x = torch.randn(2, 1, 32, 40)
    seg.eval()
    with torch.no_grad():
        torch.testing.assert_close(seg(x), seg.head(seg.backbone(x)), atol=1e-5, rtol=1e-4)
    # the same gradients for every parameter (batch statistics: train mode)
    seg.train()
    grads = []
    for forward in (seg, lambda v: seg.head(seg.backbone(v))):
        seg.zero_grad()
        forward(x).square().mean().backward()
        grads.append({k: p.grad.clone() for k, p in seg.named_parameters()})
    for k in grads[0]:
        torch.testing.assert_close(grads[0][k], grads[1][k], atol=1e-5, rtol=1e-3, msg=k)
