"""Segment from a handful of labels: linear probe, fine-tuning, local contrastive stage.

A :class:`Segmenter` is the backbone plus a 1x1 convolution to class scores. Training
functions are generators that yield :class:`Progress` after every step (so napari
workers can show progress and cancel between steps) and return the trained segmenter;
:func:`train_segmenter` drives one to the end for scripts and the CLI.

Methods (METHOD.md): linear probing freezes the backbone and fits the 1x1 conv with a
Dice + cross-entropy loss; fine-tuning trains the whole network with split learning
rates (backbone small, head large) from the probe's head, with paired spatial and
intensity augmentation and early stopping on held-out annotated slices when there are
enough; optionally first a supervised local contrastive stage (Hu et al. 2021).
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Collection, Generator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import augment
from .annotations import AnnotatedSlice, collect_annotations
from .augment import AugmentConfig
from .checkpoint import (
    FORMAT_VERSION,
    SEGMENTER,
    ModelFileError,
    atomic_torch_save,
    build_backbone,
    library_versions,
    load_model_file,
)
from .classes import DEFAULT_CLASSES, IGNORE
from .device import release_memory, resolve_device
from .losses.local_supcon import local_supcon_loss
from .losses.segmentation import balanced_class_weights, dice_ce_loss, weights_from_counts
from .nets.heads import LinearHead
from .nets.unet import UNet
from .preprocess import PreparedSlices, PreprocessConfig, prepare_volume, resample, unpad

FINETUNE_AUGMENT = AugmentConfig(
    noise_p=0.3,
    noise_std=0.2,
    blur_p=0.3,
    blur_sigma=1.0,
    gamma_p=0.5,
    gamma_log=0.2,
    bias_p=0.5,
    bias_coef=0.3,
    invert_p=0.0,
    rotation_deg=30.0,
    scale_min=0.75,
    scale_max=1.0,
    flip_p=0.0,
)


@dataclass
class TrainConfig:
    """How a segmenter is trained from annotations."""

    mode: str = "linear"  # "linear" or "finetune"
    classes: tuple[str, ...] = DEFAULT_CLASSES
    annotation_mode: str = "full"
    background_value: int | None = None
    seed: int = 0
    # linear probe
    probe_steps: int = 300
    probe_lr: float = 1e-2
    probe_max_pixels: int = 100_000
    probe_balance: float = 0.5  # class weights ~ frequency ** -probe_balance
    # fine-tuning
    ft_steps: int = 300
    lr_backbone: float = 5e-5
    lr_head: float = 1e-2
    batch_size: int = 8
    crop: int = 128  # fine-tuning window (model-grid pixels); smaller images use their size
    freeze_bn: bool = True
    min_slices_for_val: int = 6
    val_fraction: float = 0.2
    eval_every: int = 25
    patience: int = 4
    augment: AugmentConfig = field(default_factory=lambda: FINETUNE_AUGMENT)
    # supervised local contrastive stage before fine-tuning (0 = off)
    local_contrast_steps: int = 0
    local_contrast_lr: float = 1e-4
    local_contrast_temperature: float = 0.1

    def __post_init__(self) -> None:
        if self.mode not in ("linear", "finetune"):
            raise ValueError(f"Unknown mode {self.mode!r}: use 'linear' or 'finetune'.")
        self.classes = tuple(self.classes)
        if len(self.classes) < 2:
            raise ValueError("At least two classes (background and one structure) are needed.")
        if self.probe_steps < 1:
            raise ValueError("The linear probe needs at least one step (probe_steps >= 1).")
        if isinstance(self.augment, dict):
            self.augment = AugmentConfig(**self.augment)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["classes"] = list(self.classes)
        return d


@dataclass
class Progress:
    """Reported after each training step."""

    stage: str  # "features", "local-contrast", "probe", "finetune"
    step: int
    total: int
    loss: float | None = None
    message: str = ""


class Segmenter(nn.Module):
    """Backbone + linear head: ``(N, 1, H, W) -> (N, K, H, W)`` class scores."""

    def __init__(
        self,
        backbone: UNet,
        classes: Sequence[str] = DEFAULT_CLASSES,
        preprocess: PreprocessConfig | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.classes = tuple(classes)
        self.preprocess = preprocess or PreprocessConfig()
        self.head = LinearHead(backbone.config.out_channels, len(self.classes))
        self.meta: dict = {}

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def file_dict(self) -> dict:
        return {
            "format": SEGMENTER,
            "version": FORMAT_VERSION,
            "arch": self.backbone.config.to_dict(),
            "preprocess": self.preprocess.to_dict(),
            "classes": list(self.classes),
            "state_dict": {k: v.detach().cpu() for k, v in self.backbone.state_dict().items()},
            "head": {
                "type": "linear",
                "state_dict": {k: v.detach().cpu() for k, v in self.head.state_dict().items()},
            },
            "meta": {**self.meta, "library": library_versions()},
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the segmenter file atomically."""
        return atomic_torch_save(self.file_dict(), path)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> Segmenter:
        obj = load_model_file(path, expect="segmenter")
        name = Path(path).name
        backbone = build_backbone(obj, name)
        seg = cls(backbone, obj["classes"], PreprocessConfig.from_dict(obj["preprocess"]))
        head = obj.get("head", {})
        if head.get("type") != "linear":
            raise ModelFileError(f"{name} has an unknown head type {head.get('type')!r}.")
        try:
            seg.head.load_state_dict({k: v.float() for k, v in head["state_dict"].items()})
        except RuntimeError:
            raise ModelFileError(f"{name}: the head does not match its classes.") from None
        seg.meta = dict(obj.get("meta", {}))
        return seg


def load_backbone(path: str | os.PathLike) -> tuple[UNet, PreprocessConfig, dict]:
    """Backbone, preprocessing and metadata from a backbone (or segmenter) file."""
    obj = load_model_file(path, expect="backbone")
    return (
        build_backbone(obj, Path(path).name),
        PreprocessConfig.from_dict(obj["preprocess"]),
        dict(obj.get("meta", {})),
    )


# -- training data -----------------------------------------------------------------------
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


# -- linear probe ------------------------------------------------------------------------
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


# -- fine-tuning -------------------------------------------------------------------------
def _crop_batch(
    slices: Sequence[TrainingSlice], crop: int, n: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random crops (image ``(n, 1, c, c)``, target ``(n, c, c)``) of random slices.

    ``c`` is ``crop`` or, when every slice is smaller, the largest slice side.
    """
    crop = min(crop, max(max(s.x.shape[-2:]) for s in slices))
    xs, ts = [], []
    for i in torch.randint(len(slices), (n,), generator=gen).tolist():
        s = slices[i]
        x, t = s.x, s.target_model
        h, w = x.shape[-2:]
        ph, pw = max(0, crop - h), max(0, crop - w)
        if ph or pw:
            pads = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
            x = F.pad(x[None], pads, mode="replicate")[0]
            t = F.pad(t, pads, value=IGNORE)
            h, w = x.shape[-2:]
        top = int(torch.randint(h - crop + 1, (1,), generator=gen))
        left = int(torch.randint(w - crop + 1, (1,), generator=gen))
        xs.append(x[:, top : top + crop, left : left + crop])
        ts.append(t[top : top + crop, left : left + crop])
    return torch.stack(xs), torch.stack(ts)


def paired_augment(
    x: torch.Tensor, target: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Same random affine on image ``(N, 1, H, W)`` (bilinear) and labels ``(N, H, W)``
    (nearest; pixels from outside the field of view become ``-1``); intensity on the image."""
    theta = augment.random_affine(x.shape[0], cfg, gen, x.device)
    xw = augment.warp(x, theta)
    grid = F.affine_grid(theta, [x.shape[0], 1, *x.shape[-2:]], align_corners=False)
    tw = (
        F.grid_sample(
            (target.float() + 1)[:, None],
            grid,
            mode="nearest",
            padding_mode="zeros",
            align_corners=False,
        )[:, 0].long()
        - 1
    )
    return augment.intensity_augment(xw, cfg, gen), tw


def _freeze_bn(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


@torch.no_grad()
def _mean_dice(segmenter: Segmenter, slices: Sequence[TrainingSlice], device) -> float:
    """Mean foreground Dice of the model on whole held-out slices (model grid)."""
    segmenter.eval()
    inter = np.zeros(segmenter.n_classes)
    total = np.zeros(segmenter.n_classes)
    for s in slices:
        x = s.x[None].to(device).contiguous(memory_format=torch.channels_last)
        pred = segmenter(x).argmax(1)[0].cpu()
        t = s.target_model
        keep = t != IGNORE
        for c in range(1, segmenter.n_classes):
            p, g = (pred == c) & keep, t == c
            inter[c] += float((p & g).sum())
            total[c] += float(p.sum() + g.sum())
    present = total[1:] > 0
    dice = 2 * inter[1:][present] / total[1:][present]
    return float(dice.mean()) if dice.size else 0.0


def _split_validation(
    slices: list[TrainingSlice], cfg: TrainConfig, gen: torch.Generator
) -> tuple[list[TrainingSlice], list[TrainingSlice]]:
    if len(slices) < cfg.min_slices_for_val:
        return slices, []
    n_val = max(2, int(round(cfg.val_fraction * len(slices))))
    order = torch.randperm(len(slices), generator=gen).tolist()
    val = [slices[i] for i in order[:n_val]]
    train = [slices[i] for i in order[n_val:]]
    return train, val


def local_contrast_iter(
    segmenter: Segmenter,
    slices: Sequence[TrainingSlice],
    cfg: TrainConfig,
    device: torch.device,
    gen: torch.Generator,
) -> Generator[Progress, None, None]:
    """Supervised local contrastive training of the backbone (Hu et al. 2021), in place."""
    d = segmenter.backbone.config.out_channels
    proj = nn.Sequential(nn.Conv2d(d, d, 1), nn.ReLU(inplace=True), nn.Conv2d(d, d, 1))
    proj = proj.to(device)
    params = list(segmenter.backbone.parameters()) + list(proj.parameters())
    opt = torch.optim.Adam(params, lr=cfg.local_contrast_lr)
    segmenter.backbone.train()
    if cfg.freeze_bn:
        _freeze_bn(segmenter.backbone)
    for step in range(cfg.local_contrast_steps):
        x, t = _crop_batch(slices, cfg.crop, cfg.batch_size, gen)
        x, t = paired_augment(x.to(device), t.to(device), cfg.augment, gen)
        feats = proj(segmenter.backbone(x.contiguous(memory_format=torch.channels_last)))
        loss = local_supcon_loss(feats, t, cfg.local_contrast_temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        yield Progress("local-contrast", step + 1, cfg.local_contrast_steps, loss.item())


def fine_tune_iter(
    segmenter: Segmenter,
    slices: list[TrainingSlice],
    cfg: TrainConfig,
    device: torch.device,
) -> Generator[Progress, None, None]:
    """Fine-tune the whole segmenter (in place), with early stopping when possible.

    With at least ``min_slices_for_val`` annotated slices, ``val_fraction`` of them are
    held out; the weights with the best held-out Dice (checked every ``eval_every``
    steps, ``patience`` checks without gain stop the run) are kept.
    """
    gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    cpu_gen = torch.Generator().manual_seed(cfg.seed + 2)
    train, val = _split_validation(list(slices), cfg, cpu_gen)
    if cfg.local_contrast_steps:
        yield from local_contrast_iter(segmenter, train, cfg, device, gen)
    yield from fit_linear_probe_iter(segmenter, train, cfg, device)
    opt = torch.optim.Adam(
        [
            {"params": segmenter.backbone.parameters(), "lr": cfg.lr_backbone},
            {"params": segmenter.head.parameters(), "lr": cfg.lr_head},
        ]
    )
    weights = balanced_class_weights(
        torch.cat([s.target_model.flatten() for s in train]), segmenter.n_classes
    ).to(device)
    best, best_state, bad = -1.0, None, 0
    for step in range(cfg.ft_steps):
        segmenter.train()
        if cfg.freeze_bn:
            _freeze_bn(segmenter.backbone)
        x, t = _crop_batch(train, cfg.crop, cfg.batch_size, cpu_gen)
        x, t = paired_augment(x.to(device), t.to(device), cfg.augment, gen)
        if not (t >= 0).any():
            continue
        logits = segmenter(x.contiguous(memory_format=torch.channels_last))
        loss = dice_ce_loss(logits, t, weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        msg = ""
        if val and ((step + 1) % cfg.eval_every == 0 or step + 1 == cfg.ft_steps):
            score = _mean_dice(segmenter, val, device)
            msg = f"held-out Dice {score:.3f}"
            if score > best:
                best, bad = score, 0
                best_state = copy.deepcopy(segmenter.state_dict())
            else:
                bad += 1
        yield Progress("finetune", step + 1, cfg.ft_steps, loss.item(), msg)
        if val and bad >= cfg.patience:
            break
    if best_state is not None:
        segmenter.load_state_dict(best_state)
        segmenter.meta["heldout_dice"] = best
    segmenter.eval()


def train_segmenter_iter(
    backbone: UNet | Segmenter,
    preprocess: PreprocessConfig,
    images: Sequence[tuple[np.ndarray, Sequence[float]]],
    labels: Sequence[np.ndarray],
    cfg: TrainConfig | None = None,
    device: str | torch.device = "auto",
    names: Sequence[str] | None = None,
    background_slices: Sequence[Collection[int]] | None = None,
) -> Generator[Progress, None, Segmenter]:
    """Train a segmenter from ``(image, spacing)`` pairs and their ``labels`` arrays.

    ``background_slices``: per pair, flat indices of slices annotated as background only
    (:mod:`napari_pix2rep.annotations`).

    ``backbone`` is a pretrained :class:`UNet` (a copy is trained, the original is left
    untouched) or an existing :class:`Segmenter` to continue from (e.g. after the user
    corrected slices). Yields :class:`Progress`; returns the trained :class:`Segmenter`.
    """
    cfg = cfg or TrainConfig()
    dev = resolve_device(device)
    torch.manual_seed(cfg.seed)
    annotations = collect_annotations(
        [(img, lab) for (img, _), lab in zip(images, labels)],
        n_classes=len(cfg.classes),
        mode=cfg.annotation_mode,
        background_value=cfg.background_value,
        names=list(names) if names else None,
        background_slices=background_slices,
    )
    if isinstance(backbone, Segmenter):
        if backbone.classes != cfg.classes:
            raise ValueError("The segmenter's classes differ from the classes asked for.")
        segmenter = copy.deepcopy(backbone)
    else:
        segmenter = Segmenter(copy.deepcopy(backbone), cfg.classes, preprocess)
    segmenter.to(dev).to(memory_format=torch.channels_last)
    t0 = time.perf_counter()
    slices = training_slices(images, annotations, preprocess, segmenter.backbone.config.stride)
    try:
        if cfg.mode == "linear":
            yield from fit_linear_probe_iter(segmenter, slices, cfg, dev)
        else:
            yield from fine_tune_iter(segmenter, slices, cfg, dev)
    finally:
        release_memory(dev)
    segmenter.eval().cpu()
    segmenter.meta.update(
        {
            "mode": cfg.mode,
            "train_config": cfg.to_dict(),
            "annotated_slices": [[s.image, s.index] for s in slices],
            "train_seconds": round(time.perf_counter() - t0, 2),
            "names": list(names) if names else [],
        }
    )
    return segmenter


def run_to_end(
    gen: Generator[Progress, None, Segmenter],
    progress: Callable[[Progress], None] | None = None,
) -> Segmenter:
    """Drive a training generator, calling ``progress`` at each step; return its result."""
    while True:
        try:
            p = next(gen)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(p)


def train_segmenter(*args, progress: Callable[[Progress], None] | None = None, **kwargs):
    """:func:`train_segmenter_iter` run to the end; returns the :class:`Segmenter`."""
    return run_to_end(train_segmenter_iter(*args, **kwargs), progress)
