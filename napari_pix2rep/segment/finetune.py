"""Fine-tuning the whole segmenter, and the supervised local contrastive stage before it.

Fine-tuning (docs/benchmarks.md, "Fine-tuning recipe") trains backbone and head with split
learning rates (backbone small, head large) from the probe's head (a ``"linear"`` head on
the backbone's output, whatever ``probe_head`` says), on crops resampled from
the annotated slices through random rotations, scales, mirrors and warps
(:mod:`napari_pix2rep.segment.crops`), mostly centred on the heart, with intensity
augmentation (:func:`napari_pix2rep.pretrain.augment.intensity_augment`; ranges
:data:`~napari_pix2rep.pretrain.augment.FINETUNE_AUGMENT`), BatchNorm statistics frozen,
and early stopping on held-out annotated slices when there are many; optionally first a
supervised local contrastive stage (Hu et al. 2021). The recipe was chosen on the
validation patients (``benchmarks/finetune_recipe.py``, docs/benchmarks.md).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Generator, Sequence
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from napari_pix2rep.core.classes import IGNORE
from napari_pix2rep.core.progress import Progress
from napari_pix2rep.losses.local_supcon import local_supcon_loss
from napari_pix2rep.losses.segmentation import balanced_class_weights, dice_ce_loss
from napari_pix2rep.model.segmenter import Segmenter
from napari_pix2rep.pretrain import augment
from napari_pix2rep.segment.crops import sample_crops
from napari_pix2rep.segment.probe import TrainingSlice, fit_linear_probe_iter
from napari_pix2rep.segment.train_config import TrainConfig


def _crop_batch(
    slices: Sequence[TrainingSlice], cfg: TrainConfig, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``cfg.batch_size`` random crops (image ``(n, 1, c, c)``, target ``(n, c, c)``) of
    random slices, spatially augmented (:func:`napari_pix2rep.segment.crops.sample_crops`).

    ``c`` is ``cfg.crop`` or, when every slice is smaller, the largest slice side.
    """
    size = min(cfg.crop, max(max(s.x.shape[-2:]) for s in slices))
    return sample_crops(
        [s.x for s in slices],
        [s.target_model for s in slices],
        cfg.batch_size,
        size,
        cfg.augment,
        gen,
        cfg.foreground_p,
        cfg.elastic_px,
    )


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
        x, t = _crop_batch(slices, cfg, gen)
        x = augment.intensity_augment(x.to(device), cfg.augment, gen)
        t = t.to(device)
        feats = proj(segmenter.backbone(x.contiguous(memory_format=torch.channels_last)))
        loss = local_supcon_loss(feats, t, cfg.local_contrast_temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        yield Progress("local-contrast", step + 1, cfg.local_contrast_steps, loss.item())


def _step(
    segmenter: Segmenter,
    train: Sequence[TrainingSlice],
    cfg: TrainConfig,
    opt: torch.optim.Optimizer,
    weights: torch.Tensor,
    gens: tuple[torch.Generator, torch.Generator],
    device: torch.device,
) -> float | None:
    """One step on a batch of augmented crops (BatchNorm frozen with ``cfg.freeze_bn``);
    the loss, or None when the batch held no labelled pixel (no step taken)."""
    cpu_gen, gen = gens
    segmenter.train()
    if cfg.freeze_bn:
        _freeze_bn(segmenter.backbone)
    x, t = _crop_batch(train, cfg, cpu_gen)
    x = augment.intensity_augment(x.to(device), cfg.augment, gen)
    t = t.to(device)
    if not (t >= 0).any():
        return None
    loss = dice_ce_loss(segmenter(x.contiguous(memory_format=torch.channels_last)), t, weights)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.item())


def adapt_iter(
    segmenter: Segmenter,
    slices: list[TrainingSlice],
    cfg: TrainConfig,
    device: torch.device,
) -> Generator[Progress, None, None]:
    """Adapt a trained segmenter (the default cardiac model) to the painted slices, in
    place: ``cfg.adapt_steps`` steps of the whole network from its own weights, head
    included (nothing is re-initialised), at the small rate ``cfg.adapt_lr``, on the same
    augmented crops as fine-tuning. Few, small steps move the model towards this patient
    without forgetting what it learnt from many (the rate and steps were chosen on the
    validation patients: docs/benchmarks.md, "Default model")."""
    gens = (torch.Generator().manual_seed(cfg.seed + 2), torch.Generator(device=device))
    gens[1].manual_seed(cfg.seed + 1)
    opt = torch.optim.Adam(segmenter.parameters(), lr=cfg.adapt_lr)
    weights = balanced_class_weights(
        torch.cat([s.target_model.flatten() for s in slices]), segmenter.n_classes
    ).to(device)
    t0 = time.perf_counter()
    for step in range(cfg.adapt_steps):
        loss = _step(segmenter, slices, cfg, opt, weights, gens, device)
        eta = (time.perf_counter() - t0) / (step + 1) * (cfg.adapt_steps - step - 1)
        yield Progress("finetune", step + 1, cfg.adapt_steps, loss, eta_s=eta, message="Adapting")
    segmenter.eval()


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
    # fine-tuning starts from a probe on the backbone's output (a "linear" head, as the
    # recipe was chosen with), whatever head the probe alone would fit
    yield from fit_linear_probe_iter(segmenter, train, replace(cfg, probe_head="linear"), device)
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
    t0 = time.perf_counter()
    for step in range(cfg.ft_steps):
        loss = _step(segmenter, train, cfg, opt, weights, (cpu_gen, gen), device)
        if loss is None:
            continue
        msg = ""
        if val and ((step + 1) % cfg.eval_every == 0 or step + 1 == cfg.ft_steps):
            score = _mean_dice(segmenter, val, device)
            msg = f"held-out Dice {score:.3f}"
            if score > best:
                best, bad = score, 0
                best_state = copy.deepcopy(segmenter.state_dict())
            else:
                bad += 1
        per_step = (time.perf_counter() - t0) / (step + 1)
        eta = per_step * (cfg.ft_steps - step - 1)
        yield Progress("finetune", step + 1, cfg.ft_steps, loss, eta_s=eta, message=msg)
        if val and bad >= cfg.patience:
            break
    if best_state is not None:
        segmenter.load_state_dict(best_state)
        segmenter.meta["heldout_dice"] = best
    segmenter.eval()
