"""Long jobs as generators, for the napari workers, the CLI and scripts.

Pretraining (:func:`pretrain_job`), training a segmenter from annotated pairs
(:func:`train_job`), predicting (:func:`predict_job`) and the dock's Segment (training
then predicting, :func:`segment_job`). Each yields :class:`~napari_pix2rep.progress.Progress`
after every step, checks ``should_stop()`` between steps (so a cancel takes effect within
one step) and returns a result object; any exception it raises is the caller's to
report. torch is imported only when a job runs, so importing this module is cheap. No Qt.
"""

from __future__ import annotations

import os
import time
from collections.abc import Collection, Generator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .progress import Progress, StopCheck, never, until_stopped
from .threads import cpu_threads

__all__ = [
    "PretrainResult",
    "SegmentResult",
    "load_model_source",
    "predict_job",
    "pretrain_job",
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

    ``uncertainty`` is ``prediction.uncertainty()`` as float16, computed in the job's
    thread so the GUI thread does not have to.
    """

    segmenter: Any  # napari_pix2rep.segmenter.Segmenter
    prediction: Any  # napari_pix2rep.predict.Prediction
    cancelled: bool = False
    seconds: float = 0.0
    trained: bool = True
    uncertainty: np.ndarray | None = None
    region: Any = None  # the HeartRegion prediction ran on (None: the whole view)


# --------------------------------------------------------------------------- pretraining


def pretrain_job(
    volumes: Sequence[tuple[np.ndarray, Sequence[float], str]],
    inputs: Sequence[str | os.PathLike] = (),
    out: str | os.PathLike = "pretrained.pt",
    config: Any = None,
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
    :mod:`napari_pix2rep.datafiles`, and ``exclude`` globs skipped). ``out`` is checked
    and (with ``lock``; under torchrun only rank 0 locks) locked before any work, one run
    per file; the checkpoint goes there atomically, every ``config.checkpoint_every``
    steps or ``config.checkpoint_minutes``, and when the run ends or is stopped.
    ``resume`` continues the run saved in that checkpoint (``config`` then only sets the
    steps and the checkpoint cadence). Stages: "note" (a stale lock taken over),
    "loading", "start" (the run described, before the first step), "pretrain". Returns a
    :class:`PretrainResult` (``path`` None when stopped before the first step).
    """
    from .datafiles import find_training_images
    from .device import resolve_device
    from .outputs import OutputLock, check_output_file
    from .pretrain_config import PretrainConfig

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
    found: Any,
    out: str | os.PathLike,
    cfg: Any,
    dev: Any,
    init: str | os.PathLike | None,
    resume: str | os.PathLike | None,
    should_stop: StopCheck,
) -> Generator[Progress, None, PretrainResult]:
    """The body of :func:`pretrain_job`, its output checked and locked."""
    from .pretrain import Pretrainer
    from .slices import load_slices

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


def load_model_source(path: str | os.PathLike) -> tuple[Any, Any]:
    """``(UNet or Segmenter, PreprocessConfig)`` from a backbone or segmenter file, read once."""
    from .checkpoint import load_model_file
    from .segmenter import Segmenter, backbone_from_dict, is_segmenter_dict

    obj = load_model_file(path)
    name = Path(path).name
    if is_segmenter_dict(obj):
        seg = Segmenter.from_dict(obj, name)
        return seg, seg.preprocess
    return backbone_from_dict(obj, name)


def _source(model: Any) -> tuple[Any, Any]:
    """``(UNet or Segmenter, PreprocessConfig)`` of a model file path or a Segmenter."""
    if isinstance(model, str | os.PathLike):
        return load_model_source(model)
    return model, getattr(model, "preprocess", None)


def _train(
    source: Any,
    preprocess: Any,
    pairs: Sequence[tuple[np.ndarray, Sequence[float], np.ndarray]],
    cfg: Any,
    dev: Any,
    names: Sequence[str],
    background: Sequence[Collection[int]],
    should_stop: StopCheck,
) -> Generator[Progress, None, Any]:
    """Train on ``pairs`` from ``source``'s backbone (a segmenter's features, never its
    classes: the classes asked for are learnt); the Segmenter, None when stopped."""
    from .segmenter import Segmenter
    from .training import train_segmenter_iter

    if isinstance(source, Segmenter):
        source = source.backbone
    gen = train_segmenter_iter(
        source,
        preprocess,
        [(np.asarray(img), tuple(sp)) for img, sp, _ in pairs],
        [np.asarray(lab) for _, _, lab in pairs],
        cfg,
        device=dev,
        names=list(names),
        background_slices=list(background),
    )
    _, segmenter = yield from until_stopped(gen, should_stop)
    return segmenter


def _train_config(config: Any) -> Any:
    from .train_config import TrainConfig

    return config if isinstance(config, TrainConfig) else TrainConfig(**(config or {}))


def _predict(
    segmenter: Any,
    target: tuple[np.ndarray, Sequence[float]],
    dev: Any,
    should_stop: StopCheck,
    region: Any = None,
    cleanup: bool | None = None,
) -> Generator[Progress, None, Any]:
    """The :class:`~napari_pix2rep.predict.Prediction` of ``target``; None when stopped."""
    from .predict import DEFAULT_CLEANUP, predict_iter

    gen = predict_iter(
        segmenter,
        np.asarray(target[0]),
        tuple(target[1]),
        device=dev,
        cleanup=DEFAULT_CLEANUP if cleanup is None else cleanup,
        region=region,
    )
    _, pred = yield from until_stopped(gen, should_stop)
    return pred


def _require_segmenter(source: Any) -> None:
    from .segmenter import Segmenter

    if not isinstance(source, Segmenter):
        raise ValueError(
            "The chosen model is a backbone, not a trained segmenter: press "
            "Segment to train one first."
        )


def train_job(
    model: Any,
    pairs: Sequence[tuple[np.ndarray, Sequence[float], np.ndarray]],
    *,
    config: Any = None,
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
    from .device import release_memory, resolve_device

    t0 = time.perf_counter()
    dev = resolve_device(device)
    cfg = _train_config(config)
    source, preprocess = _source(model)
    pairs = list(pairs)
    names = list(names) if names else [f"image {i + 1}" for i in range(len(pairs))]
    background = [set(b) for b in (background or [])]
    background += [set()] * (len(pairs) - len(background))
    with cpu_threads(dev, keep_free):
        try:
            seg = yield from _train(
                source, preprocess, pairs, cfg, dev, names, background, should_stop
            )
        finally:
            release_memory(dev)
    return SegmentResult(seg, None, seg is None, time.perf_counter() - t0)


def predict_job(
    model: Any,
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
    e.g. ES for ED; :func:`napari_pix2rep.localise.locate_heart`); no labels are looked
    at. The result holds no uncertainty (``prediction.uncertainty()`` gives it).
    """
    from .device import resolve_device
    from .localise import locate_heart

    t0 = time.perf_counter()
    dev = resolve_device(device)
    segmenter, _ = _source(model)
    _require_segmenter(segmenter)
    image, spacing = np.asarray(target[0]), tuple(target[1])
    region = locate_heart(image, spacing, other_frames=other_frames) if localise else None
    with cpu_threads(dev, keep_free):
        pred = yield from _predict(segmenter, target, dev, should_stop, region, cleanup)
    return SegmentResult(
        segmenter, pred, pred is None, time.perf_counter() - t0, False, region=region
    )


def segment_job(
    model: Any,
    pairs: Sequence[tuple[np.ndarray, Sequence[float], np.ndarray]],
    target: tuple[np.ndarray, Sequence[float]],
    *,
    config: Any = None,
    device: str = "auto",
    names: Sequence[str] | None = None,
    train: bool = True,
    should_stop: StopCheck = never,
    background: Sequence[Collection[int]] | None = None,
    own: int | None = None,
    on_grid: Sequence[bool] | None = None,
    localise: bool = True,
    propagate: bool = True,
) -> Generator[Progress, None, SegmentResult]:
    """Train a segmenter from annotated ``pairs`` ``(image, spacing, labels)``, segment ``target``.

    ``model`` is a backbone/segmenter file path (read once) or a ``Segmenter``. With
    ``train=False`` the segmenter (``model`` itself, or loaded from a segmenter file)
    only predicts. Training uses only the labels given here (``background``: per pair,
    flat indices of its background-only slices); the returned prediction is for every
    slice and frame of ``target`` ``(image, spacing)``.

    ``own`` is the index of the pair annotating the target itself (None: none);
    ``on_grid`` says per pair whether it is another phase of the target's stack (None:
    same shape and spacing). With ``localise`` prediction runs on the heart region
    (:func:`napari_pix2rep.localise.locate_heart`: the target's paint, else that of the
    pairs on its grid, else the motion of a cine); with ``propagate`` (training only)
    painted slices are carried onto the target first
    (:func:`napari_pix2rep.loop.carry_iter`) and a 3D target is predicted fused with
    the other painted phases of its stack (:func:`napari_pix2rep.loop.fusion_sources`,
    :func:`napari_pix2rep.propagate.predict_fused_iter`), each predicted by a linear
    probe of its own paint (a fine-tuned segmenter predicts them itself).
    """
    from .device import release_memory, resolve_device
    from .loop import carry_iter, fusion_sources, grid_pairs, heart_region
    from .predict import DEFAULT_CLEANUP
    from .propagate import predict_fused_iter

    t0 = time.perf_counter()
    dev = resolve_device(device)
    cfg = _train_config(config)
    pairs = list(pairs)
    names = list(names) if names else [f"image {i + 1}" for i in range(len(pairs))]
    background = [set(b) for b in (background or [])]
    background += [set()] * (len(pairs) - len(background))
    grid = grid_pairs(pairs, target, own, on_grid)
    region = heart_region(pairs, target, own, grid) if localise else None
    source, preprocess = _source(model)

    def stopped() -> SegmentResult:
        return SegmentResult(None, None, True, time.perf_counter() - t0)

    with cpu_threads(dev):
        try:
            if train:
                if propagate:
                    extra = yield from carry_iter(
                        pairs, target, own, background, grid, len(cfg.classes), region, should_stop
                    )
                    if extra is None:
                        return stopped()
                    pairs += extra
                    names += ["carried"] * len(extra)
                    background += [set()] * len(extra)
                segmenter = yield from _train(
                    source, preprocess, pairs, cfg, dev, names, background, should_stop
                )
                if segmenter is None:
                    return stopped()
            else:
                _require_segmenter(source)
                segmenter = source
            sources = []
            for k in fusion_sources(pairs, target, grid) if train and propagate else []:
                seg = segmenter  # a fine-tune is not repeated; a probe of its own paint is
                if cfg.mode == "linear":
                    seg = yield from _train(
                        source,
                        preprocess,
                        [pairs[k]],
                        cfg,
                        dev,
                        [names[k]],
                        [background[k]],
                        should_stop,
                    )
                    if seg is None:
                        return stopped()
                sources.append((np.asarray(pairs[k][0]), seg))
            if sources:
                pred = yield from predict_fused_iter(
                    segmenter, target, sources, dev, DEFAULT_CLEANUP, region, should_stop
                )
            else:
                pred = yield from _predict(segmenter, target, dev, should_stop, region)
        finally:
            release_memory(dev)
    if pred is None:
        return SegmentResult(segmenter, None, True, time.perf_counter() - t0, train)
    uncertainty = pred.uncertainty().astype(np.float16)
    seconds = time.perf_counter() - t0
    return SegmentResult(segmenter, pred, False, seconds, train, uncertainty, region)
