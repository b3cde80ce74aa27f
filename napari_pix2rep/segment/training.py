"""Training a segmenter from annotations: the settings and the run.

:func:`train_segmenter_iter` collects the annotated slices
(:mod:`napari_pix2rep.annotate.annotations`), prepares them
(:func:`napari_pix2rep.segment.probe.training_slices`)
and fits a linear probe (:mod:`napari_pix2rep.segment.probe`) or fine-tunes
(:mod:`napari_pix2rep.segment.finetune`); it is a generator yielding
:class:`~napari_pix2rep.core.progress.Progress` after every step (close it to stop between
steps) and returning the trained :class:`~napari_pix2rep.model.segmenter.Segmenter`.
:func:`train_segmenter` runs it to the end for scripts.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Collection, Generator, Sequence

import numpy as np
import torch

from napari_pix2rep.annotate.annotations import collect_annotations
from napari_pix2rep.core.progress import Progress, StopCheck, never, run_to_end, until_stopped
from napari_pix2rep.model.device import release_memory, resolve_device
from napari_pix2rep.model.nets.unet import UNet
from napari_pix2rep.model.preprocess import PreprocessConfig
from napari_pix2rep.model.segmenter import Segmenter
from napari_pix2rep.segment.finetune import adapt_iter, fine_tune_iter
from napari_pix2rep.segment.probe import fit_linear_probe_iter, training_slices
from napari_pix2rep.segment.train_config import TrainConfig


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
    (:mod:`napari_pix2rep.annotate.annotations`).

    ``backbone`` is a pretrained :class:`UNet` (a copy is trained, the original is left
    untouched) or an existing :class:`Segmenter` to continue from (e.g. after the user
    corrected slices); a zero-click segmenter (the default model) is adapted
    (:func:`~napari_pix2rep.segment.finetune.adapt_iter`) whatever ``cfg.mode`` says.
    Yields :class:`Progress`; returns the trained :class:`Segmenter`.
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
    adapt = segmenter.zero_click
    try:
        if adapt:
            yield from adapt_iter(segmenter, slices, cfg, dev)
        elif cfg.mode == "linear":
            yield from fit_linear_probe_iter(segmenter, slices, cfg, dev)
        else:
            yield from fine_tune_iter(segmenter, slices, cfg, dev)
    finally:
        release_memory(dev)
    segmenter.eval().cpu()
    segmenter.meta.update(
        {
            "mode": "adapted" if adapt else cfg.mode,
            "train_config": cfg.to_dict(),
            "annotated_slices": [[s.image, s.index] for s in slices],
            "train_seconds": round(time.perf_counter() - t0, 2),
            "names": list(names) if names else [],
        }
    )
    return segmenter


def train_segmenter(
    *args, progress: Callable[[Progress], None] | None = None, **kwargs
) -> Segmenter:
    """:func:`train_segmenter_iter` run to the end; returns the :class:`Segmenter`."""
    return run_to_end(train_segmenter_iter(*args, **kwargs), progress)


def train_until_stopped(
    start: UNet | Segmenter,
    preprocess: PreprocessConfig,
    images: Sequence[tuple[np.ndarray, Sequence[float]]],
    labels: Sequence[np.ndarray],
    cfg: TrainConfig,
    device: str | torch.device,
    names: Sequence[str],
    background: Sequence[Collection[int]],
    should_stop: StopCheck = never,
) -> Generator[Progress, None, Segmenter | None]:
    """:func:`train_segmenter_iter` asking ``should_stop()`` between steps: the trained
    :class:`Segmenter`, or None when stopped."""
    gen = train_segmenter_iter(
        start,
        preprocess,
        images,
        labels,
        cfg,
        device=device,
        names=names,
        background_slices=background,
    )
    _, seg = yield from until_stopped(gen, should_stop)
    return seg
