"""Supervised training of the default cardiac segmenter from fully labelled volumes.

The shipped default model (models/README.md) is a
:class:`~napari_pix2rep.model.segmenter.Segmenter` initialised from the Pix2Rep backbone
and trained on every slice of the ED and ES volumes of labelled patients, whole field of
view (the labels only choose where crops are centred, never what the network sees at
prediction time). Each step draws ``batch_size`` random crops
(:func:`napari_pix2rep.segment.crops.sample_crops`: rotation, zoom, mirror, elastic
warp), augments their intensities
(:func:`napari_pix2rep.pretrain.augment.intensity_augment`) and minimises soft Dice +
class-balanced cross-entropy (:func:`napari_pix2rep.losses.segmentation.dice_ce_loss`),
optionally plus the supervised local contrastive loss of Hu et al. 2021 on the backbone's
features (:func:`napari_pix2rep.losses.local_supcon.local_supcon_loss`, weight
``aux_weight``). AdamW, linear warm-up then cosine decay.

The run is a generator of :class:`~napari_pix2rep.core.progress.Progress`; its whole state
(weights, optimiser, random generators, step, log) is written atomically to one file every
``checkpoint_every`` steps and when the run stops, so :func:`train_iter` with
``resume=True`` continues exactly where it stopped. Nothing here depends on a GPU.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Generator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from napari_pix2rep.core.progress import Progress, StopCheck, never
from napari_pix2rep.io.acdc import Case
from napari_pix2rep.losses.local_supcon import local_supcon_loss
from napari_pix2rep.losses.segmentation import dice_ce_loss, weights_from_counts
from napari_pix2rep.measure.metrics import dice_per_class
from napari_pix2rep.model.checkpoint import atomic_torch_save, half_state_dict
from napari_pix2rep.model.nets.unet import UNet
from napari_pix2rep.model.preprocess import prepare_volume
from napari_pix2rep.model.segmenter import FLIP_AVERAGE_KEY, ZERO_CLICK_KEY, Segmenter
from napari_pix2rep.pretrain import augment
from napari_pix2rep.pretrain.augment import FINETUNE_AUGMENT, AugmentConfig
from napari_pix2rep.segment.crops import sample_crops
from napari_pix2rep.segment.predict import predict_volume


@dataclass(frozen=True)
class SupervisedConfig:
    """How the default segmenter is trained (stored in its state and shipped file)."""

    steps: int = 6000
    batch_size: int = 8
    crop: int = 128
    lr: float = 1e-3
    warmup: int = 200
    final_lr_fraction: float = 0.02
    weight_decay: float = 1e-4
    foreground_p: float = 0.5
    elastic_px: float = 3.0
    slice_flip_p: float = 0.5  # reverse the neighbour slices' order (a network with context)
    aux_weight: float = 0.0  # supervised local contrastive term (0 = off)
    aux_temperature: float = 0.1
    seed: int = 0
    checkpoint_every: int = 100
    validate_every: int = 1000
    augment: AugmentConfig = field(default_factory=lambda: FINETUNE_AUGMENT)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SupervisedConfig:
        d = dict(d)
        d["augment"] = AugmentConfig(**d["augment"])
        return cls(**d)


@dataclass
class PackedSlice:
    """A labelled slice on the model grid: ``x`` ``(1, H, W)`` float16, ``t`` ``(H, W)`` uint8."""

    x: torch.Tensor
    t: torch.Tensor


def pack_cases(cases: Sequence[Case], segmenter: Segmenter) -> list[PackedSlice]:
    """Every slice of the ED and ES volumes of ``cases``, normalised and resampled as the
    segmenter's preprocessing does at prediction time; labels by nearest neighbour."""
    out = []
    for case in cases:
        vols = case.load()
        for phase in ("ed", "es"):
            img, gt = vols[phase], vols[f"{phase}_gt"]
            prep = prepare_volume(img.data, img.spacing, segmenter.preprocess)
            t = torch.from_numpy(np.asarray(gt.data, dtype=np.float32))[:, None]
            t = F.interpolate(t, size=prep.size, mode="nearest-exact")[:, 0].to(torch.uint8)
            for s in range(prep.x.shape[0]):
                out.append(PackedSlice(prep.x[s].half().clone(), t[s].clone()))
    return out


def lr_at(step: int, cfg: SupervisedConfig) -> float:
    """Learning rate of step ``step`` (0-based): linear warm-up, then cosine decay."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    floor = cfg.final_lr_fraction
    return cfg.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _projector(d: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(d, d, 1), nn.ReLU(inplace=True), nn.Conv2d(d, d, 1))


@torch.no_grad()
def validation_dice(
    segmenter: Segmenter, cases: Sequence[Case], device: torch.device
) -> dict[str, float]:
    """Mean 3D Dice per structure over the ED and ES volumes of ``cases`` (clean-up on)."""
    segmenter.eval()
    scores: dict[int, list[float]] = {c: [] for c in range(1, segmenter.n_classes)}
    for case in cases:
        vols = case.load()
        for phase in ("ed", "es"):
            pred = predict_volume(segmenter, vols[phase].data, vols[phase].spacing, device)
            gt = np.asarray(vols[f"{phase}_gt"].data).astype(np.uint8)
            for c, d in dice_per_class(pred.labels, gt, list(scores)).items():
                scores[c].append(d)
    out = {segmenter.classes[c]: float(np.mean(v)) for c, v in scores.items()}
    out["mean"] = float(np.mean(list(out.values())))
    return out


class SupervisedRun:
    """The state of one training run: model, optimiser, generators, step and log."""

    def __init__(self, segmenter: Segmenter, cfg: SupervisedConfig, device: torch.device):
        self.segmenter = segmenter.to(device).to(memory_format=torch.channels_last)
        self.cfg = cfg
        self.device = device
        d = segmenter.backbone.config.out_channels
        self.projector = _projector(d).to(device) if cfg.aux_weight > 0 else None
        params = list(self.segmenter.parameters())
        if self.projector is not None:
            params += list(self.projector.parameters())
        self.opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.crop_gen = torch.Generator().manual_seed(cfg.seed)
        self.aug_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)
        self.step = 0
        self.log: list[dict] = []
        self.best: dict | None = None  # {"step", "dice", "state_dict"} of the best validation

    def state(self) -> dict:
        return {
            "format": "napari-pix2rep/supervised-run",
            "config": self.cfg.to_dict(),
            "segmenter": self.segmenter.file_dict(),
            "projector": None if self.projector is None else self.projector.state_dict(),
            "optimizer": self.opt.state_dict(),
            "crop_gen": self.crop_gen.get_state(),
            "aug_gen": self.aug_gen.get_state(),
            "aug_device": self.device.type,
            "step": self.step,
            "log": self.log,
            "best": self.best,
        }

    def save(self, path: str | os.PathLike) -> Path:
        return atomic_torch_save(self.state(), path)

    @classmethod
    def load(cls, path: str | os.PathLike, device: torch.device) -> SupervisedRun:
        """The run saved at ``path``, on ``device``. On another kind of device than it
        was saved on (a GPU run shipped or continued on a CPU) the augmentation generator
        restarts from its seed: the rest of the state is exact, the trajectory differs."""
        obj = torch.load(path, map_location="cpu", weights_only=True)
        if obj.get("format") != "napari-pix2rep/supervised-run":
            raise ValueError(f"{path} is not a supervised training state.")
        run = cls(
            Segmenter.from_dict(obj["segmenter"]),
            SupervisedConfig.from_dict(obj["config"]),
            device,
        )
        if run.projector is not None:
            run.projector.load_state_dict(obj["projector"])
        run.opt.load_state_dict(obj["optimizer"])
        run.crop_gen.set_state(obj["crop_gen"])
        if obj.get("aug_device", "cpu") == device.type:  # a GPU's generator state fits no CPU
            run.aug_gen.set_state(obj["aug_gen"])
        run.step, run.log, run.best = obj["step"], obj["log"], obj["best"]
        return run

    def train_step(self, data: Sequence[PackedSlice], class_weights: torch.Tensor) -> float:
        cfg, seg = self.cfg, self.segmenter
        for group in self.opt.param_groups:
            group["lr"] = lr_at(self.step, cfg)
        seg.train()
        x, t = sample_crops(
            [s.x for s in data],
            [s.t for s in data],
            cfg.batch_size,
            cfg.crop,
            cfg.augment,
            self.crop_gen,
            cfg.foreground_p,
            cfg.elastic_px,
        )
        if x.shape[1] > 1:  # neighbour slices: stacks run base to apex or apex to base
            turn = torch.rand(len(x), generator=self.crop_gen) < cfg.slice_flip_p
            x = torch.where(turn[:, None, None, None], x.flip(1), x)
        x = augment.intensity_augment(x.to(self.device), cfg.augment, self.aug_gen)
        x = x.contiguous(memory_format=torch.channels_last)
        t = t.to(self.device)
        if self.projector is None:
            loss = dice_ce_loss(seg(x), t, class_weights)
        else:
            feats = seg.backbone(x)
            loss = dice_ce_loss(seg.head(feats), t, class_weights)
            loss = loss + cfg.aux_weight * local_supcon_loss(
                self.projector(feats), t, cfg.aux_temperature
            )
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.step += 1
        return float(loss.item())


def with_context(segmenter: Segmenter, context: int) -> Segmenter:
    """A copy of a one-channel ``segmenter`` that sees each slice with ``context``
    neighbours on either side (:attr:`~napari_pix2rep.model.preprocess.PreprocessConfig.context`).

    The first convolution's weights ``(C, 1, 3, 3)`` go to the middle of the new
    ``(C, 2 * context + 1, 3, 3)`` and the neighbours' are zero, so the copy computes
    exactly what ``segmenter`` did until training teaches it to use them.
    """
    if segmenter.preprocess.context or segmenter.backbone.config.in_channels != 1:
        raise ValueError("The segmenter already reads more than one slice.")
    preprocess = replace(segmenter.preprocess, context=context)
    config = replace(segmenter.backbone.config, in_channels=preprocess.channels)
    state = segmenter.backbone.state_dict()
    first = state["down.0.0.weight"]  # (C, 1, 3, 3)
    wide = torch.zeros(first.shape[0], preprocess.channels, *first.shape[2:], dtype=first.dtype)
    wide[:, context] = first[:, 0]
    backbone = UNet(config)
    backbone.load_state_dict({**state, "down.0.0.weight": wide})
    out = Segmenter(backbone, segmenter.classes, preprocess, head=segmenter.head_type)
    out.head.load_state_dict(segmenter.head.state_dict())
    out.meta = dict(segmenter.meta)
    return out


def class_weights_of(data: Sequence[PackedSlice], n_classes: int) -> torch.Tensor:
    """Balanced cross-entropy weights (frequency ** -0.5, mean 1) over all labelled pixels."""
    counts = torch.zeros(n_classes)
    for s in data:
        counts += torch.bincount(s.t.flatten().long(), minlength=n_classes)[:n_classes].float()
    return weights_from_counts(counts)


def train_iter(
    run: SupervisedRun,
    data: Sequence[PackedSlice],
    val_cases: Sequence[Case],
    state_path: str | os.PathLike,
    should_stop: StopCheck = never,
) -> Generator[Progress, None, SupervisedRun]:
    """Train ``run`` to ``run.cfg.steps``, checkpointing to ``state_path``.

    Every ``validate_every`` steps (and at the end) the 3D Dice on ``val_cases`` is logged
    and the best weights kept in the state. The state is saved every
    ``checkpoint_every`` steps and when ``should_stop()`` ends the run early.
    """
    cfg = run.cfg
    weights = class_weights_of(data, run.segmenter.n_classes).to(run.device)
    t0, start = time.perf_counter(), run.step
    losses: list[float] = []
    while run.step < cfg.steps:
        if should_stop():
            run.save(state_path)
            return run
        loss = run.train_step(data, weights)
        losses.append(loss)
        msg = ""
        if val_cases and (run.step % cfg.validate_every == 0 or run.step == cfg.steps):
            dice = validation_dice(run.segmenter, val_cases, run.device)
            msg = "validation " + ", ".join(f"{k} {v:.3f}" for k, v in dice.items())
            run.log.append({"step": run.step, "validation": dice})
            if run.best is None or dice["mean"] > run.best["dice"]["mean"]:
                state = {
                    k: v.detach().cpu().clone() for k, v in run.segmenter.state_dict().items()
                }
                run.best = {"step": run.step, "dice": dice, "state_dict": state}
        if run.step % 50 == 0:
            run.log.append(
                {"step": run.step, "loss": float(np.mean(losses)), "lr": lr_at(run.step - 1, cfg)}
            )
            losses = []
        if run.step % cfg.checkpoint_every == 0 or run.step == cfg.steps:
            run.save(state_path)
        per_step = (time.perf_counter() - t0) / (run.step - start)
        yield Progress(
            "train",
            run.step,
            cfg.steps,
            loss,
            eta_s=per_step * (cfg.steps - run.step),
            message=msg,
        )
    return run


#: Scale of the prior correction folded into the shipped head (:func:`prior_offsets`),
#: chosen on the first 10 validation patients among 0, 0.5, 0.75 and 1 and confirmed on
#: the other 10 (docs/benchmarks.md, "Default model").
PRIOR_CORRECTION = 0.75


def prior_offsets(class_weights: torch.Tensor, scale: float = PRIOR_CORRECTION) -> torch.Tensor:
    """Logit offsets ``(K,)`` that undo the class weighting of the training loss.

    Cross-entropy with class weights ``w_k`` learns scores whose softmax is close to
    ``w_k p(k | x) / sum_j w_j p(j | x)`` (the weights act as a change of class priors),
    so adding ``-log w_k`` to the scores gives back ``p(k | x)`` (Elkan 2001; the prior
    correction of Saerens et al. 2002). ``scale`` 1 is the full correction; the Dice term
    of the loss also favours the smaller classes, and less than 1 was measured better.
    """
    return -scale * torch.log(class_weights.clamp_min(1e-12))


def shipped_segmenter(
    run: SupervisedRun,
    use_best: bool = True,
    class_weights: torch.Tensor | None = None,
    prior_correction: float = PRIOR_CORRECTION,
    flip_average: bool = True,
) -> dict:
    """The segmenter file of ``run`` for users: fp16 weights, provenance, zero-click mark.

    ``use_best``: the weights of the best validation check (else the last step's).
    ``class_weights`` ``(K,)``: those of the training loss
    (:func:`class_weights_of` the training slices); when given, ``prior_correction``
    times :func:`prior_offsets` is added to the head's bias. ``flip_average``: the file
    asks prediction to average each slice with its mirror
    (:data:`~napari_pix2rep.model.segmenter.FLIP_AVERAGE_KEY`).
    """
    seg = run.segmenter
    obj = seg.file_dict()
    step = run.step
    if use_best and run.best is not None:
        full = {k: v for k, v in run.best["state_dict"].items()}
        obj["state_dict"] = {
            k[len("backbone.") :]: v for k, v in full.items() if k.startswith("backbone.")
        }
        obj["head"]["state_dict"] = {
            k[len("head.") :]: v for k, v in full.items() if k.startswith("head.")
        }
        step = run.best["step"]
    offsets = None
    if class_weights is not None:
        offsets = prior_offsets(class_weights.float().cpu(), prior_correction)
        head = dict(obj["head"]["state_dict"])
        head["conv.bias"] = head["conv.bias"].float() + offsets
        obj["head"] = {**obj["head"], "state_dict": head}
    obj["state_dict"] = half_state_dict(obj["state_dict"])
    obj["meta"].update(
        {
            ZERO_CLICK_KEY: True,
            FLIP_AVERAGE_KEY: bool(flip_average),
            "prior_correction": None
            if offsets is None
            else {"scale": prior_correction, "offsets": offsets.tolist()},
            "mode": "supervised",
            "steps": step,
            "train_config": run.cfg.to_dict(),
            "validation": [e for e in run.log if "validation" in e],
            "weights_dtype": "float16",
        }
    )
    return obj


__all__ = [
    "PackedSlice",
    "SupervisedConfig",
    "SupervisedRun",
    "class_weights_of",
    "lr_at",
    "pack_cases",
    "prior_offsets",
    "shipped_segmenter",
    "train_iter",
    "validation_dice",
    "with_context",
]
