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


def test_feature_levels_are_the_bottleneck_and_every_decoder_level():
    net = UNet(preset("small")).eval()
    with torch.no_grad():
        levels = net.feature_levels(torch.zeros(1, 1, 32, 48))
        decoder = net.decoder_levels(torch.zeros(1, 1, 32, 48))
    assert [tuple(f.shape[1:]) for f in levels] == [
        (256, 2, 3),
        (128, 4, 6),
        (64, 8, 12),
        (32, 16, 24),
        (16, 32, 48),
    ]
    assert net.config.level_widths == [256, 128, 64, 32, 16]
    for a, b in zip(levels[-3:], decoder):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_hypercolumn_head_equals_the_explicit_upsample_concatenate_linear():
    """The folded per-level projection against the hypercolumn as written down."""
    torch.manual_seed(2)
    seg = Segmenter(UNet(preset("tiny")), ("background", "a", "b"), head="hypercolumn").eval()
    assert seg.head_type == "hypercolumn"
    assert seg.head.conv.weight.shape == (3, 8 + 16 + 32 + 64, 1, 1)
    torch.nn.init.normal_(seg.head.conv.weight)
    torch.nn.init.normal_(seg.head.conv.bias)
    x = torch.randn(2, 1, 40, 24)
    with torch.no_grad():
        levels = seg.backbone.feature_levels(x)
        size = levels[-1].shape[-2:]
        column = torch.cat(
            [F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in levels], 1
        )
        assert column.shape == (2, 120, 40, 24)
        explicit = F.conv2d(column, seg.head.conv.weight, seg.head.conv.bias)
        torch.testing.assert_close(seg(x), explicit, atol=1e-4, rtol=1e-4)


def test_set_head_replaces_the_head_by_type():
    seg = Segmenter(UNet(preset("tiny")), ("background", "a"))
    assert seg.head_type == "linear" and seg.head.conv.weight.shape == (2, 16, 1, 1)
    seg.set_head("hypercolumn")
    assert seg.head_type == "hypercolumn" and seg.head.conv.weight.shape == (2, 120, 1, 1)
    with pytest.raises(ValueError, match="Unknown head type 'mlp'"):
        seg.set_head("mlp")
    with pytest.raises(ValueError, match="reads levels of"):
        seg.head(seg.backbone.decoder_levels(torch.zeros(1, 1, 16, 16)))
