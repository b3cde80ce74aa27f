"""The linear probe: training slices, the probe's pixel sample, and fitting the head.

The annotated slices are prepared once on the model grid (:func:`training_slices`);
the probe fits the segmenter's head on frozen backbone features of a class-stratified
sample of the labelled pixels, on the native grid: the backbone's D-channel output
(:func:`probe_samples`, a ``"linear"`` head) or, by default, the hypercolumn of every
level of the U-Net, the bottleneck and each decoder level
(:func:`hypercolumn_samples`, a ``"hypercolumn"`` head,
:class:`~napari_pix2rep.model.nets.heads.HypercolumnHead`). Either way the head is one
linear map, the standardisation of the features folded into it.
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


def _keep_rates(slices: Sequence[TrainingSlice], k: int, max_pixels: int) -> torch.Tensor:
    """``(K,)`` fraction of each class's labelled pixels the probe keeps: at most
    ``max_pixels / K`` of each class."""
    counts = sum(
        torch.bincount(s.target_native[s.target_native >= 0].flatten(), minlength=k).float()
        for s in slices
    )
    return (max_pixels / k / counts.clamp_min(1)).clamp(max=1.0)


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
    rate = _keep_rates(slices, n_classes, max_pixels)
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


#: Most values (channels x pixels) of one level of one slice resampled at a time while
#: the hypercolumn sample is read (64 Mi bytes of float32).
_RESAMPLE_VALUES = 2**24


def _kept(s: TrainingSlice, rate: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Flat native-grid indices of the labelled pixels of ``s`` kept at their class's
    ``rate`` ``(K,)``."""
    t = s.target_native.flatten()
    keep = (t >= 0) & (torch.rand(t.shape, generator=gen) < rate[t.clamp_min(0)])
    return keep.nonzero()[:, 0]


def level_at_pixels(
    level: torch.Tensor, s: TrainingSlice, index: torch.Tensor, chunk: int | None = None
) -> torch.Tensor:
    """One feature level of one slice at native-grid pixels: ``(C, h, w) -> (P, C)``.

    ``level`` is on the padded model grid at its own resolution (``(h, w)`` divides
    ``s.x``'s ``(Hp, Wp)``); ``index`` ``(P,)`` holds flat indices into the native
    ``(H, W)`` of ``s.target_native``. The level is mapped as prediction maps its
    projection (:class:`~napari_pix2rep.model.nets.heads.HypercolumnHead`, then
    :func:`~napari_pix2rep.model.preprocess.to_native`): upsampled bilinearly to
    ``(Hp, Wp)``, unpadded and resampled to ``(H, W)``. Every step is linear and acts on
    each channel alone, so a head applied to these rows gives exactly the predicted
    scores there. ``chunk`` channels at a time (by default as many as keep one
    resampled chunk within :data:`_RESAMPLE_VALUES` values).
    """
    full, native = tuple(s.x.shape[-2:]), tuple(s.target_native.shape)
    chunk = chunk or max(1, _RESAMPLE_VALUES // (max(full[0] * full[1], native[0] * native[1])))
    index = index.to(level.device)
    rows = []
    for c0 in range(0, level.shape[0], chunk):
        z = level[None, c0 : c0 + chunk]
        if tuple(z.shape[-2:]) != full:
            z = F.interpolate(z, size=full, mode="bilinear", align_corners=False)
        z = resample(unpad(z, s.prepared.pads), native)
        rows.append(z[0].flatten(1)[:, index].T.cpu())
    return torch.cat(rows, 1)


@torch.no_grad()
def hypercolumn_samples(
    backbone: UNet,
    slices: Sequence[TrainingSlice],
    device: torch.device,
    n_classes: int,
    max_pixels: int,
    gen: torch.Generator,
    batch_size: int = 8,
    skip: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hypercolumn features of labelled pixels on the native grid, class-stratified.

    Returns ``X (P, sum of C_i)`` (every level of
    :meth:`~napari_pix2rep.model.nets.unet.UNet.feature_levels`, columns in level order:
    ``UNetConfig.level_widths``), ``y (P,)`` and ``w (P,)``, sampled as
    :func:`probe_samples` does (each class keeps at most ``max_pixels / K`` pixels, ``w``
    the inverse of its keep rate). The pixels are drawn first and each level is read
    only there (:func:`level_at_pixels`), one slice and a few channels at a time: the
    full-resolution hypercolumn is never built. ``skip``: the coarsest levels left out
    (their columns are not in ``X``).
    """
    backbone.eval()
    rate = _keep_rates(slices, n_classes, max_pixels)
    kept = [_kept(s, rate, gen) for s in slices]
    xs, ys = [], []
    for i in range(0, len(slices), batch_size):
        chunk = list(zip(slices[i : i + batch_size], kept[i : i + batch_size]))
        groups: dict[tuple, list[tuple[TrainingSlice, torch.Tensor]]] = {}
        for s, index in chunk:
            groups.setdefault(tuple(s.x.shape), []).append((s, index))
        for group in groups.values():
            x = torch.stack([s.x for s, _ in group]).to(device)
            levels = backbone.feature_levels(x.contiguous(memory_format=torch.channels_last))
            for j, (s, index) in enumerate(group):
                rows = [level_at_pixels(f[j].float(), s, index) for f in levels[skip:]]
                xs.append(torch.cat(rows, 1))
                ys.append(s.target_native.flatten()[index])
            del levels
    y = torch.cat(ys)
    return torch.cat(xs), y, 1.0 / rate[y]


def output_of_levels(backbone: UNet, x: torch.Tensor) -> torch.Tensor:
    """The backbone's D-channel output at the pixels of hypercolumn rows ``x``
    ``(P, sum of C_i)``: its output conv applied to the columns of the levels that feed
    it (the last ``hypercolumn + 1``), ``(P, D)``; exact, as every step is linear."""
    out = backbone.out
    start = x.shape[1] - out.in_channels
    return F.linear(x[:, start:], out.weight[:, :, 0, 0].to(x), out.bias.to(x))


def fold_output(
    backbone: UNet, weight: torch.Tensor, bias: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights ``(K, sum of C_i + D)`` on hypercolumn rows followed by their
    :func:`output_of_levels` as weights ``(K, sum of C_i)`` on the rows alone (and the
    bias ``(K,)``): the output conv is linear in the levels that feed it, so its weights
    fold into theirs."""
    out = backbone.out
    d = out.out_channels
    w_out = weight[:, -d:]  # (K, D)
    folded = weight[:, :-d].clone()
    folded[:, folded.shape[1] - out.in_channels :] += w_out @ out.weight[:, :, 0, 0].to(weight)
    return folded, bias + w_out @ out.bias.to(weight)


def _fit_linear(
    x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, k: int, cfg: TrainConfig
) -> Generator[Progress, None, tuple[torch.Tensor, torch.Tensor, float]]:
    """Fit class scores ``x @ W.T + b`` to labels ``y`` on sampled rows ``x`` ``(P, D)``
    (weights ``w``); returns ``W (K, D)``, ``b (K,)`` on the raw features and the last loss.

    ``x`` is standardised (in place); full-batch Adam from zero fits a linear layer with
    Dice + cross-entropy (sample-weighted, so it is the loss over all labelled pixels,
    classes balanced by ``frequency ** -probe_balance``); the standardisation is folded
    back into ``W`` and ``b``. Yields a progress for every step but the last.
    """
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    x.sub_(mean).div_(std)
    lin = nn.Linear(x.shape[1], k).to(x.device)
    nn.init.zeros_(lin.weight)
    nn.init.zeros_(lin.bias)
    counts = torch.zeros(k, device=x.device).index_add_(0, y, w)
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
    return wt, b, loss.item()


def fit_linear_probe_iter(
    segmenter: Segmenter,
    slices: Sequence[TrainingSlice],
    cfg: TrainConfig,
    device: torch.device,
) -> Generator[Progress, None, None]:
    """Fit the segmenter's head on frozen features of the annotated slices (in place).

    ``cfg.probe_head`` says what it reads: ``"linear"`` the backbone's output
    (:func:`probe_samples`; the head a ``"linear"`` 1x1 conv on it), ``"hypercolumn"``
    every level of the U-Net (:func:`hypercolumn_samples`; a ``"hypercolumn"`` head),
    ``"hypercolumn+output"`` both, the output's weights then folded into those of the
    levels that feed it (a ``"hypercolumn"`` head). The segmenter's head is replaced by
    a new one of that type when it has another. A class-stratified sample of the
    labelled pixels is fitted by :func:`_fit_linear`.
    """
    yield Progress("features", 0, len(slices), message="Computing features")
    gen = torch.Generator().manual_seed(cfg.seed)
    k, backbone = segmenter.n_classes, segmenter.backbone
    kind = "linear" if cfg.probe_head == "linear" else "hypercolumn"
    if segmenter.head_type != kind:
        segmenter.set_head(kind)
    skip = 1 if cfg.probe_head == "decoder" else 0
    if kind == "linear":
        x, y, w = probe_samples(backbone, slices, device, k, cfg.probe_max_pixels, gen)
    else:
        x, y, w = hypercolumn_samples(
            backbone, slices, device, k, cfg.probe_max_pixels, gen, skip=skip
        )
    x, y, w = x.to(device), y.to(device), w.to(device)
    with_output = cfg.probe_head == "hypercolumn+output"
    if with_output:
        with torch.no_grad():
            x = torch.cat([x, output_of_levels(backbone, x)], 1)
    wt, b, loss = yield from _fit_linear(x, y, w, k, cfg)
    del x
    with torch.no_grad():
        if with_output:
            wt, b = fold_output(backbone, wt, b)
        if skip:  # the levels left out weigh nothing
            wt = torch.cat([wt.new_zeros(k, sum(backbone.config.level_widths[:skip])), wt], 1)
        segmenter.head.conv.weight.copy_(wt[:, :, None, None])
        segmenter.head.conv.bias.copy_(b)
    # the last step is reported once the head holds the fitted weights
    yield Progress("probe", cfg.probe_steps, cfg.probe_steps, loss)
