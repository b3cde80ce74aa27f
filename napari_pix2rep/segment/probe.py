"""The linear probe: training slices, the probe's pixel sample, and fitting the 1x1 conv.

The annotated slices are prepared once on the model grid (:func:`training_slices`);
the probe fits the segmenter's head on frozen backbone features of a class-stratified
sample of the labelled pixels (:func:`probe_samples`), on the native grid.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from napari_pix2rep.annotate.annotations import AnnotatedSlice
from napari_pix2rep.core.classes import IGNORE
from napari_pix2rep.core.progress import Progress
from napari_pix2rep.losses.segmentation import dice_ce_loss, weights_from_counts
from napari_pix2rep.model.nets.unet import UNet
from napari_pix2rep.model.preprocess import (
    PreparedSlices,
    PreprocessConfig,
    prepare_volume,
    resample,
    unpad,
)
from napari_pix2rep.model.segmenter import Segmenter
from napari_pix2rep.segment.train_config import TrainConfig


@dataclass
class TrainingSlice:
    """An annotated slice ready to train on.

    ``x``: ``(1, Hp, Wp)`` model-grid image (padded); ``target_native``: ``(H, W)``;
    ``target_model``: ``(Hp, Wp)`` on the model grid (nearest), ``-1`` in the padding.
    """

    x: torch.Tensor
    target_native: torch.Tensor
    target_model: torch.Tensor
    prepared: PreparedSlices
    image: int
    index: int


def _model_grid_target(target: np.ndarray, prepared: PreparedSlices) -> torch.Tensor:
    t = torch.from_numpy(target).float()[None, None]
    t = F.interpolate(t, size=prepared.size, mode="nearest-exact")[0, 0].long()
    left, right, top, bottom = prepared.pads
    return F.pad(t, (left, right, top, bottom), value=IGNORE)


def training_slices(
    images: Sequence[tuple[np.ndarray, Sequence[float]]],
    annotations: Sequence[AnnotatedSlice],
    preprocess: PreprocessConfig,
    stride: int,
) -> list[TrainingSlice]:
    """Prepare the annotated slices of each image (whole-volume normalisation first)."""
    out = []
    for k, (data, spacing) in enumerate(images):
        mine = [a for a in annotations if a.image == k]
        if not mine:
            continue
        prepared = prepare_volume(data, spacing, preprocess, stride)
        for a in mine:
            out.append(
                TrainingSlice(
                    x=prepared.x[a.index],
                    target_native=torch.from_numpy(a.target.astype(np.int64)),
                    target_model=_model_grid_target(a.target, prepared),
                    prepared=prepared,
                    image=k,
                    index=a.index,
                )
            )
    return out


@torch.no_grad()
def probe_samples(
    backbone: UNet,
    slices: Sequence[TrainingSlice],
    device: torch.device,
    n_classes: int,
    max_pixels: int,
    gen: torch.Generator,
    batch_size: int = 8,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features of labelled pixels on the native grid, class-stratified subsample.

    Returns ``X (P, D)``, ``y (P,)`` and ``w (P,)``: each class keeps at most
    ``max_pixels / K`` pixels at random and ``w`` is the inverse of its keep rate, so
    weighted sums over the sample estimate sums over all labelled pixels. Features are
    computed slice batch by slice batch and resampled to each slice's native grid (a
    1x1 conv commutes with bilinear resampling), never all held at once.
    """
    backbone.eval()
    k = n_classes
    counts = sum(
        torch.bincount(s.target_native[s.target_native >= 0].flatten(), minlength=k).float()
        for s in slices
    )
    rate = (max_pixels / k / counts.clamp_min(1)).clamp(max=1.0)
    xs, ys = [], []
    for i in range(0, len(slices), batch_size):
        chunk = slices[i : i + batch_size]
        groups: dict[tuple, list[TrainingSlice]] = {}
        for s in chunk:
            groups.setdefault(tuple(s.x.shape), []).append(s)
        for group in groups.values():
            x = torch.stack([s.x for s in group]).to(device)
            feats = backbone(x.contiguous(memory_format=torch.channels_last)).float()
            for f, s in zip(feats, group):
                t = s.target_native.flatten()
                keep = (t >= 0) & (torch.rand(t.shape, generator=gen) < rate[t.clamp_min(0)])
                native = resample(unpad(f[None], s.prepared.pads), tuple(s.target_native.shape))
                xs.append(native[0].flatten(1).T[keep.to(native.device)].cpu())
                ys.append(t[keep])
    y = torch.cat(ys)
    return torch.cat(xs), y, 1.0 / rate[y]


def fit_linear_probe_iter(
    segmenter: Segmenter,
    slices: Sequence[TrainingSlice],
    cfg: TrainConfig,
    device: torch.device,
) -> Generator[Progress, None, None]:
    """Fit ``segmenter.head`` on frozen features of the annotated slices (in place).

    Features of a class-stratified sample of the labelled pixels (:func:`probe_samples`)
    are standardised; full-batch Adam fits a linear layer with Dice + cross-entropy
    (sample-weighted, so it is the loss over all labelled pixels, classes balanced by
    ``frequency ** -probe_balance``), and the standardisation is folded back into the
    1x1 conv.
    """
    yield Progress("features", 0, len(slices), message="Computing features")
    gen = torch.Generator().manual_seed(cfg.seed)
    x, y, w = probe_samples(
        segmenter.backbone, slices, device, segmenter.n_classes, cfg.probe_max_pixels, gen
    )
    x, y, w = x.to(device), y.to(device), w.to(device)
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    x = (x - mean) / std
    k = segmenter.n_classes
    lin = nn.Linear(x.shape[1], k).to(device)
    nn.init.zeros_(lin.weight)
    nn.init.zeros_(lin.bias)
    counts = torch.zeros(k, device=device).index_add_(0, y, w)
    weights = weights_from_counts(counts, cfg.probe_balance)
    opt = torch.optim.Adam(lin.parameters(), lr=cfg.probe_lr)
    for step in range(cfg.probe_steps):
        loss = dice_ce_loss(lin(x), y, weights, pixel_weights=w)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step + 1 < cfg.probe_steps:
            yield Progress("probe", step + 1, cfg.probe_steps, loss.item())
    with torch.no_grad():
        wt = lin.weight / std  # (K, D)
        b = lin.bias - (wt * mean).sum(1)
        segmenter.head.conv.weight.copy_(wt[:, :, None, None])
        segmenter.head.conv.bias.copy_(b)
    # the last step is reported once the head holds the fitted weights
    yield Progress("probe", cfg.probe_steps, cfg.probe_steps, loss.item())
