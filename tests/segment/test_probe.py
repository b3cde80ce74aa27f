"""The hypercolumn linear probe: features read at the sampled native pixels exactly as
prediction maps the head's scores, the folding of the output conv, and a separable toy."""

import numpy as np
import pytest
import torch

from napari_pix2rep.annotate.annotations import collect_annotations
from napari_pix2rep.model.nets.unet import UNet, preset
from napari_pix2rep.model.preprocess import PreprocessConfig, resample, to_native, unpad
from napari_pix2rep.model.segmenter import Segmenter
from napari_pix2rep.segment.probe import (
    fit_linear_probe_iter,
    fold_output,
    hypercolumn_samples,
    level_at_pixels,
    output_of_levels,
    training_slices,
)
from napari_pix2rep.segment.train_config import TrainConfig
from napari_pix2rep.segment.training import train_segmenter

CLASSES = ("background", "a", "b", "c")


def _toy(seed: int = 0, noise: float = 0.1):
    """A 3-slice image whose intensity codes the class of each pixel (linearly separable
    from any features that keep the intensity), pixels 1.2 x 1.7 mm: on the 1.5 mm model
    grid rows are upsampled back to native and columns downsampled (antialiased)."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((3, 30, 26), np.int64)
    labels[:, 6:16, 4:12] = 1
    labels[:, 14:26, 13:22] = 2
    labels[:, 3:9, 16:24] = 3
    image = np.array([0.0, 3.0, 1.0, 2.0], np.float32)[labels]
    image += rng.normal(0, noise, image.shape).astype(np.float32)
    return image, (8.0, 1.2, 1.7), labels


def _slices(image, spacing, labels, which=(0, 2)):
    painted = np.zeros_like(labels)
    for z in which:
        painted[z] = labels[z]
    ann = collect_annotations([(image, painted)], n_classes=len(CLASSES))
    return training_slices([(image, spacing)], ann, PreprocessConfig(), 8)


def test_levels_read_at_native_pixels_give_the_predicted_scores():
    """Rows of every level at the native pixels, times the head, equal the segmenter's
    scores mapped back to the native grid (bilinear up, unpad, antialiased down)."""
    torch.manual_seed(0)
    image, spacing, labels = _toy()
    slices = _slices(image, spacing, labels)
    s = slices[0]
    assert s.x.shape[-2:] != s.target_native.shape  # a real resampling both ways
    seg = Segmenter(UNet(preset("tiny")), CLASSES, head="hypercolumn").eval()
    torch.nn.init.normal_(seg.head.conv.weight)
    torch.nn.init.normal_(seg.head.conv.bias)
    with torch.no_grad():
        x = s.x[None]
        native = to_native(seg(x), s.prepared)[0].flatten(1).T  # (H * W, K)
        everywhere = torch.arange(native.shape[0])
        levels = seg.backbone.feature_levels(x)
        for chunk in (None, 5):  # the channel chunking changes nothing
            rows = torch.cat([level_at_pixels(f[0], s, everywhere, chunk) for f in levels], 1)
            assert rows.shape == (native.shape[0], 120)
            scores = rows @ seg.head.conv.weight[:, :, 0, 0].T + seg.head.conv.bias
            torch.testing.assert_close(scores, native, atol=1e-4, rtol=1e-4)
        # the D-channel output at those pixels, as the linear probe reads it
        out = resample(unpad(seg.backbone(x), s.prepared.pads), tuple(s.target_native.shape))
        torch.testing.assert_close(
            output_of_levels(seg.backbone, rows), out[0].flatten(1).T, atol=1e-4, rtol=1e-4
        )


def test_folding_the_output_into_the_levels_is_exact():
    torch.manual_seed(1)
    net = UNet(preset("tiny"))
    rows = torch.randn(50, 120)
    weight, bias = torch.randn(4, 120 + 16), torch.randn(4)
    with torch.no_grad():
        both = torch.cat([rows, output_of_levels(net, rows)], 1) @ weight.T + bias
        folded, folded_bias = fold_output(net, weight, bias)
        assert folded.shape == (4, 120)
        torch.testing.assert_close(rows @ folded.T + folded_bias, both, atol=1e-4, rtol=1e-4)


def test_the_hypercolumn_sample_is_class_stratified_and_bounded():
    torch.manual_seed(2)
    image, spacing, labels = _toy()
    slices = _slices(image, spacing, labels)
    net = UNet(preset("tiny"))
    gen = torch.Generator().manual_seed(0)
    x, y, w = hypercolumn_samples(net, slices, torch.device("cpu"), 4, 200, gen)
    assert x.shape == (len(y), 120) and w.shape == y.shape
    counts = torch.bincount(y, minlength=4)
    assert (counts > 20).all() and (counts < 80).all()  # about 200 / 4 each
    total = sum(torch.bincount(s.target_native.flatten(), minlength=4) for s in slices)
    # the weights make the sample's class sums those of all labelled pixels
    torch.testing.assert_close(
        torch.zeros(4, dtype=torch.float64).index_add_(0, y, w.double()),
        total.double(),
        rtol=0.35,
        atol=0,
    )


@pytest.mark.parametrize("probe_head", ["hypercolumn", "hypercolumn+output", "decoder"])
def test_the_hypercolumn_probe_fits_a_separable_toy(probe_head):
    torch.manual_seed(3)
    image, spacing, labels = _toy()
    two = np.zeros_like(labels)
    two[[0, 2]] = labels[[0, 2]]
    seg = train_segmenter(
        UNet(preset("tiny")),
        PreprocessConfig(),
        [(image, spacing)],
        [two],
        TrainConfig(classes=CLASSES, probe_head=probe_head, probe_steps=150),
        device="cpu",
    )
    assert seg.head_type == "hypercolumn"
    bottleneck = seg.head.conv.weight[:, :64]
    assert (bottleneck == 0).all() == (probe_head == "decoder")
    prepared = _slices(image, spacing, labels, which=(1,))[0]
    with torch.no_grad():
        pred = to_native(seg(prepared.x[None]), prepared.prepared)[0].argmax(0).numpy()
    assert (pred == labels[1]).mean() > 0.95  # the unpainted slice


def test_the_linear_probe_head_is_kept_on_request_and_fits_in_place():
    torch.manual_seed(4)
    image, spacing, labels = _toy()
    slices = _slices(image, spacing, labels)
    seg = Segmenter(UNet(preset("tiny")), CLASSES, head="hypercolumn")
    cfg = TrainConfig(classes=CLASSES, probe_head="linear", probe_steps=3)
    for _ in fit_linear_probe_iter(seg, slices, cfg, torch.device("cpu")):
        pass
    assert seg.head_type == "linear" and seg.head.conv.weight.abs().sum() > 0
    with pytest.raises(ValueError, match="Unknown probe head 'mlp'"):
        TrainConfig(probe_head="mlp")
