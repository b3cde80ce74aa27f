"""Long jobs as generators, for the napari workers, the CLI and scripts.

Pretraining (:func:`pretrain_job`), training a segmenter from annotated pairs
(:func:`train_job`), predicting (:func:`predict_job`) and the dock's Segment
(:func:`segment_job`); the last two run the Segment recipe (:mod:`napari_pix2rep.segment.recipe`).
The jobs hold the torch threads (:func:`~napari_pix2rep.model.threads.cpu_threads`). Each yields
:class:`~napari_pix2rep.core.progress.Progress` after every step, checks ``should_stop()``
between steps (so a cancel takes effect within one step) and returns a result object; any
exception it raises is the caller's to report. torch is imported only when a job runs,
so importing this module is cheap. No Qt.
"""

from __future__ import annotations

import os
import time
from collections.abc import Collection, Generator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from napari_pix2rep.core.progress import Progress, StopCheck, never, until_stopped
from napari_pix2rep.model.threads import cpu_threads
from napari_pix2rep.segment.settings import SegmentSettings

if TYPE_CHECKING:
    import torch

    from napari_pix2rep.io.datafiles import TrainingFiles
    from napari_pix2rep.model.nets.unet import UNet
    from napari_pix2rep.model.preprocess import PreprocessConfig
    from napari_pix2rep.model.segmenter import Segmenter
    from napari_pix2rep.pretrain.config import PretrainConfig
    from napari_pix2rep.segment.localise import HeartRegion
    from napari_pix2rep.segment.predict import Prediction
    from napari_pix2rep.segment.recipe import (
        Annotation,
        Model,
        Scan,
        SegmentOutcome,
        SegmentReport,
    )
    from napari_pix2rep.segment.train_config import TrainConfig

    #: A model file, or a loaded model (a segmenter, or a backbone and its preprocessing).
    ModelSource = str | os.PathLike | Model

__all__ = [
    "PretrainResult",
    "SegmentResult",
    "load_model_source",
    "predict_job",
    "pretrain_job",
    "recipe_job",
    "segment_job",
    "train_job",
]


@dataclass
class PretrainResult:
    """Where the backbone went and how far the run got."""

    path: Path | None
    steps_done: int
    steps_total: int
    cancelled: bool
    loss_history: list[float] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class SegmentResult:
    """The trained (or reused) segmenter and its prediction; None parts when cancelled.

    ``uncertainty`` is ``prediction.uncertainty()`` as float16 (segment jobs only),
    computed in the job's thread so the GUI thread does not have to; ``region`` is the
    heart region prediction ran on (None: the whole view); ``how`` says which model made
    the masks ("linear probe", "zero clicks, default.pt", ...); ``report`` is the recipe's.
    """

    segmenter: Segmenter | None
    prediction: Prediction | None
    cancelled: bool = False
    seconds: float = 0.0
    trained: bool = True
    uncertainty: np.ndarray | None = None
    region: HeartRegion | None = None
    how: str = ""
    report: SegmentReport | None = None


# --------------------------------------------------------------------------- pretraining


def pretrain_job(
    volumes: Sequence[tuple[np.ndarray, Sequence[float], str]],
    inputs: Sequence[str | os.PathLike] = (),
    out: str | os.PathLike = "pretrained.pt",
    config: PretrainConfig | dict | None = None,
    device: str = "auto",
    init: str | os.PathLike | None = None,
    exclude: Sequence[str] = (),
    should_stop: StopCheck = never,
    *,
    resume: str | os.PathLike | None = None,
    lock: bool = True,
    keep_free: int | None = 1,
) -> Generator[Progress, None, PretrainResult]:
    """Pretrain a backbone on open volumes ``(data, spacing, name)`` and image ``inputs``.

    ``inputs`` are NIfTI files, DICOM series or folders (searched recursively; label files, see
    :mod:`napari_pix2rep.io.datafiles`, and ``exclude`` globs skipped). ``out`` is checked
    and (with ``lock``; under torchrun only rank 0 locks) locked before any work, one run
    per file; the checkpoint goes there atomically, every ``config.checkpoint_every``
    steps or ``config.checkpoint_minutes``, and when the run ends or is stopped.
    ``resume`` continues the run saved in that checkpoint (``config`` then only sets the
    steps and the checkpoint cadence). Stages: "note" (a stale lock taken over),
    "loading", "start" (the run described, before the first step), "pretrain". Returns a
    :class:`PretrainResult` (``path`` None when stopped before the first step).
    """
    from napari_pix2rep.io.datafiles import find_training_images
    from napari_pix2rep.io.outputs import OutputLock, check_output_file
    from napari_pix2rep.model.device import resolve_device
    from napari_pix2rep.pretrain.config import PretrainConfig

    cfg = config if isinstance(config, PretrainConfig) else PretrainConfig(**(config or {}))
    check_output_file(out, "The output file")
    found = find_training_images(inputs, exclude) if inputs else None
    if not volumes and found is None:
        raise ValueError("No data to pretrain on: choose image layers or a folder.")
    dev = resolve_device(device)
    held = OutputLock(out) if lock else nullcontext()
    with held, cpu_threads(dev, keep_free):
        if getattr(held, "note", ""):
            yield Progress("note", 0, 0, message=held.note)
        run = _pretrain(volumes, found, out, cfg, dev, init, resume, should_stop)
        return (yield from run)


def _pretrain(
    volumes: Sequence[tuple[np.ndarray, Sequence[float], str]],
    found: TrainingFiles | None,
    out: str | os.PathLike,
    cfg: PretrainConfig,
    dev: torch.device,
    init: str | os.PathLike | None,
    resume: str | os.PathLike | None,
    should_stop: StopCheck,
) -> Generator[Progress, None, PretrainResult]:
    """The body of :func:`pretrain_job`, its output checked and locked."""
    from napari_pix2rep.pretrain.run import Pretrainer
    from napari_pix2rep.pretrain.slices import load_slices

    t0 = time.perf_counter()
    files = found.images if found is not None else []
    note = f"; {found.summary()} in the folder" if found is not None else ""
    loading = load_slices(volumes, files, cfg.preprocess, note)
    stopped, bank = yield from until_stopped(loading, should_stop)
    if stopped:
        return PretrainResult(None, 0, cfg.steps, True, [], time.perf_counter() - t0)
    trainer = Pretrainer(bank, cfg, out=out, device=str(dev), init=init, resume=resume)
    c = trainer.config
    what = found.summary() if found is not None else f"{len(volumes)} open images"
    yield Progress(
        "start",
        trainer.step,
        c.steps,
        message=f"{what}, {len(bank)} slices loaded in {time.perf_counter() - t0:.1f} s; "
        f"{c.loss} on {trainer.device} x{trainer.world}, effective batch "
        f"{trainer.effective_batch} ({c.batch_size} x {trainer.world}), lr {c.lr:g}; "
        f"steps {trainer.step} -> {c.steps}",
    )
    yield from trainer.steps(should_stop)
    trainer.close()
    return PretrainResult(
        Path(out) if trainer.step > 0 or Path(out).is_file() else None,
        trainer.step,
        c.steps,
        trainer.step < c.steps,
        list(trainer.loss_history),
        time.perf_counter() - t0,
    )


# --------------------------------------------------------------------------- segmenting


def load_model_source(path: str | os.PathLike) -> tuple[UNet | Segmenter, PreprocessConfig]:
    """``(UNet or Segmenter, PreprocessConfig)`` from a backbone or segmenter file, read once."""
    from napari_pix2rep.model.checkpoint import load_model_file
    from napari_pix2rep.model.segmenter import Segmenter, backbone_from_dict, is_segmenter_dict

    obj = load_model_file(path)
    name = Path(path).name
    if is_segmenter_dict(obj):
        seg = Segmenter.from_dict(obj, name)
        return seg, seg.preprocess
    return backbone_from_dict(obj, name)


def load_model(model: ModelSource) -> Model:
    """The recipe's model: a segmenter, or ``(backbone, preprocessing)``; a path is read once."""
    from napari_pix2rep.model.segmenter import Segmenter

    if isinstance(model, str | os.PathLike):
        net, preprocess = load_model_source(model)
        return net if isinstance(net, Segmenter) else (net, preprocess)
    return model


def _model_name(model: ModelSource) -> str:
    return f", {Path(model).name}" if isinstance(model, str | os.PathLike) else ""


def train_job(
    model: ModelSource,
    pairs: Sequence[tuple[np.ndarray, Sequence[float], np.ndarray]],
    *,
    config: TrainConfig | dict | None = None,
    device: str = "auto",
    names: Sequence[str] | None = None,
    background: Sequence[Collection[int]] | None = None,
    should_stop: StopCheck = never,
    keep_free: int | None = 1,
) -> Generator[Progress, None, SegmentResult]:
    """Train a segmenter from annotated ``pairs`` ``(image, spacing, labels)``, no prediction.

    ``model`` is a backbone/segmenter file path (read once) or a model object; a
    segmenter contributes its backbone (``config``'s classes are learnt). ``background``:
    per pair, flat indices of its background-only slices. The result's ``prediction`` is
    None; its ``segmenter`` too when stopped.
    """
    from napari_pix2rep.model.device import release_memory, resolve_device
    from napari_pix2rep.model.segmenter import Segmenter
    from napari_pix2rep.segment.training import train_until_stopped

    t0 = time.perf_counter()
    dev = resolve_device(device)
    cfg = SegmentSettings(training=config or {}).train_config()
    source = load_model(model)
    net, preprocess = (
        (source.backbone, source.preprocess) if isinstance(source, Segmenter) else source
    )
    pairs = list(pairs)
    names = list(names) if names else [f"image {i + 1}" for i in range(len(pairs))]
    background = [set(b) for b in (background or [])]
    background += [set()] * (len(pairs) - len(background))
    images = [(np.asarray(img), tuple(sp)) for img, sp, _ in pairs]
    labels = [np.asarray(lab) for _, _, lab in pairs]
    with cpu_threads(dev, keep_free):
        try:
            gen = train_until_stopped(
                net, preprocess, images, labels, cfg, dev, names, background, should_stop
            )
            seg = yield from gen
        finally:
            release_memory(dev)
    return SegmentResult(seg, None, seg is None, time.perf_counter() - t0)


def predict_job(
    model: ModelSource,
    target: tuple[np.ndarray, Sequence[float]],
    *,
    device: str = "auto",
    cleanup: bool | None = None,
    should_stop: StopCheck = never,
    keep_free: int | None = 1,
    localise: bool = True,
    other_frames: Sequence[np.ndarray] = (),
) -> Generator[Progress, None, SegmentResult]:
    """Segment every slice and frame of ``target`` ``(image, spacing)`` with a segmenter
    (a segmenter file, read once, or a Segmenter); ``cleanup`` None: the default clean-up.

    With ``localise`` prediction runs on the heart region found from the motion of a cine
    target, or between a 3D target and ``other_frames`` (other phases of the same stack,
    e.g. ES for ED); no labels are looked at. The result holds no uncertainty
    (``prediction.uncertainty()`` gives it).
    """
    from napari_pix2rep.segment.predict import DEFAULT_CLEANUP
    from napari_pix2rep.segment.recipe import Scan

    image, spacing = np.asarray(target[0]), tuple(target[1])
    scans = [Scan(image, spacing), *(Scan(f, spacing) for f in other_frames)]
    settings = SegmentSettings(
        train=False,
        localise=localise,
        cleanup=DEFAULT_CLEANUP if cleanup is None else cleanup,
    )
    job = segment_job(
        model,
        scans,
        [None] * len(scans),
        settings=settings,
        device=device,
        should_stop=should_stop,
        keep_free=keep_free,
        uncertainty=False,
    )
    return (yield from job)


def recipe_job(
    model: ModelSource,
    scans: Sequence[Scan],
    annotations: Sequence[Annotation | None],
    *,
    targets: Sequence[int] | None = None,
    settings: SegmentSettings | None = None,
    device: str = "auto",
    should_stop: StopCheck = never,
    keep_free: int | None = 1,
) -> Generator[Progress, None, SegmentOutcome]:
    """The Segment recipe (:func:`napari_pix2rep.segment.recipe.segment_iter`) for ``targets``
    (None: every scan), ``model`` a model file (read once) or a loaded model, on all but
    ``keep_free`` cores."""
    from napari_pix2rep.model.device import resolve_device
    from napari_pix2rep.segment.recipe import segment_iter

    dev = resolve_device(device)
    source = load_model(model)
    with cpu_threads(dev, keep_free):
        run = segment_iter(scans, annotations, source, settings, dev, should_stop, targets)
        return (yield from run)


def segment_job(
    model: ModelSource,
    scans: Sequence[Scan],
    annotations: Sequence[Annotation | None],
    *,
    target: int = 0,
    settings: SegmentSettings | None = None,
    device: str = "auto",
    should_stop: StopCheck = never,
    keep_free: int | None = 1,
    uncertainty: bool = True,
) -> Generator[Progress, None, SegmentResult]:
    """The dock's Segment: :func:`recipe_job` for ``scans[target]``, learning from every
    annotation given (one per scan, None: not painted).

    The result holds the segmenter that predicted the target (``trained`` when the
    recipe trained it), its prediction, its uncertainty (with ``uncertainty``) and the
    recipe's report.
    """
    t0 = time.perf_counter()
    job = recipe_job(
        model,
        scans,
        annotations,
        targets=[target],
        settings=settings,
        device=device,
        should_stop=should_stop,
        keep_free=keep_free,
    )
    outcome = yield from job
    return _result(outcome, target, time.perf_counter() - t0, _model_name(model), uncertainty)


def _result(
    outcome: SegmentOutcome, target: int, seconds: float, name: str, uncertainty: bool
) -> SegmentResult:
    """The :class:`SegmentResult` of one target of a recipe run."""
    if outcome.cancelled:
        return SegmentResult(None, None, True, seconds, outcome.trained, report=outcome.report)
    pred = outcome.masks[target]
    (image,) = outcome.report.images
    how = image.how + (name if image.how in ("zero clicks", "adapted") else "")
    return SegmentResult(
        outcome.segmenters[target],
        pred,
        False,
        seconds,
        outcome.trained,
        pred.uncertainty().astype(np.float16) if uncertainty else None,
        outcome.regions[target],
        how,
        outcome.report,
    )
