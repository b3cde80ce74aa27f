"""Long jobs as generators: pretraining and segmenting, for the napari workers and scripts.

Each job yields :class:`JobProgress` after every step, checks ``should_stop()`` between
steps (so a cancel takes effect within one step) and returns a result object; any
exception it raises is the caller's to report. torch is imported only when a job runs,
so importing this module is cheap. No Qt.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection, Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "JobProgress",
    "PretrainResult",
    "SegmentResult",
    "cpu_threads",
    "load_model_source",
    "pretrain_job",
    "segment_job",
]

StopCheck = Callable[[], bool]


@dataclass
class JobProgress:
    """One step of a job; ``stage`` is "loading", "pretrain", "probe", "finetune", "predict"..."""

    stage: str
    step: int
    total: int
    loss: float | None = None
    eta_s: float | None = None
    rate: float | None = None  # slices per second (pretraining)
    message: str = ""


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

    segmenter: Any  # napari_pix2rep.segment.Segmenter
    prediction: Any  # napari_pix2rep.predict.Prediction
    cancelled: bool = False
    seconds: float = 0.0
    trained: bool = True
    uncertainty: np.ndarray | None = None


def _never() -> bool:
    return False


@contextmanager
def cpu_threads(device: Any, keep_free: int = 1) -> Iterator[None]:
    """On the CPU, let torch use all cores but ``keep_free`` while the block runs.

    Call it in the thread that computes (torch's OpenMP thread count is per thread). The
    previous count is restored afterwards. No effect on accelerators.
    """
    import torch

    if getattr(device, "type", str(device)) != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) - keep_free))
    try:
        yield
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------- pretraining


def pretrain_job(
    volumes: Sequence[tuple[np.ndarray, Sequence[float], str]],
    inputs: Sequence[str | os.PathLike] = (),
    out: str | os.PathLike = "pretrained.pt",
    config: Any = None,
    device: str = "auto",
    init: str | os.PathLike | None = None,
    exclude: Sequence[str] = (),
    should_stop: StopCheck = _never,
) -> Generator[JobProgress, None, PretrainResult]:
    """Pretrain a backbone on open volumes ``(data, spacing, name)`` and image ``inputs``.

    ``inputs`` are NIfTI files, DICOM series or folders (searched recursively; label files, see
    :mod:`napari_pix2rep.datafiles`, and ``exclude`` globs skipped). ``out`` is checked
    and locked before any work (one run per file); the checkpoint goes there atomically,
    every ``config.checkpoint_every`` steps or ``config.checkpoint_minutes``, and when the
    run ends or is stopped. Returns a :class:`PretrainResult` (``path`` None when stopped
    before the first step).
    """
    from .datafiles import find_training_images
    from .device import resolve_device
    from .outputs import OutputLock, check_output_file
    from .pretrain import PretrainConfig

    cfg = config if isinstance(config, PretrainConfig) else PretrainConfig(**(config or {}))
    check_output_file(out, "The output file")
    found = find_training_images(inputs, exclude) if inputs else None
    if not volumes and found is None:
        raise ValueError("No data to pretrain on: choose image layers or a folder.")
    dev = resolve_device(device)
    with OutputLock(out), cpu_threads(dev):
        return (yield from _pretrain(volumes, found, out, cfg, dev, init, should_stop))


def _pretrain(
    volumes: Sequence[tuple[np.ndarray, Sequence[float], str]],
    found: Any,
    out: str | os.PathLike,
    cfg: Any,
    dev: Any,
    init: str | os.PathLike | None,
    should_stop: StopCheck,
) -> Generator[JobProgress, None, PretrainResult]:
    """The body of :func:`pretrain_job`, its output checked and locked."""
    from .pretrain import Pretrainer
    from .slices import SliceBank, prepare_slices

    t0 = time.perf_counter()
    files = found.images if found is not None else []
    total = len(volumes) + len(files)
    slices, sources = [], []
    note = f"; {found.summary()} in the folder" if found is not None else ""
    yield JobProgress("loading", 0, total, message=f"Preparing slices{note}")
    for i, (data, spacing, name) in enumerate(volumes):
        slices.extend(prepare_slices(np.asarray(data), tuple(spacing), cfg.preprocess))
        sources.append(f"layer:{name}")
        yield JobProgress("loading", i + 1, total, message=f"Prepared {name}")
        if should_stop():
            return PretrainResult(None, 0, cfg.steps, True, [], time.perf_counter() - t0)
    from .images import read_image

    for j, f in enumerate(files):
        vol = read_image(f, kind="image")
        slices.extend(prepare_slices(vol.data, vol.spacing, cfg.preprocess))
        sources.append(str(f))
        yield JobProgress("loading", len(volumes) + j + 1, total, message=f"Read {f.name}")
        if should_stop():
            return PretrainResult(None, 0, cfg.steps, True, [], time.perf_counter() - t0)
    bank = SliceBank(slices, sources)
    trainer = Pretrainer(bank, cfg, out=out, device=str(dev), init=init)
    for info in trainer.steps(should_stop):
        yield JobProgress(
            "pretrain",
            info.step,
            info.steps,
            loss=info.loss,
            eta_s=info.eta_s,
            rate=info.slices_per_s,
        )
    return PretrainResult(
        Path(out) if trainer.step > 0 or Path(out).is_file() else None,
        trainer.step,
        cfg.steps,
        trainer.step < cfg.steps,
        list(trainer.loss_history),
        time.perf_counter() - t0,
    )


# --------------------------------------------------------------------------- segmenting


def load_model_source(path: str | os.PathLike) -> tuple[Any, Any]:
    """``(UNet or Segmenter, PreprocessConfig)`` from a backbone or segmenter file."""
    from .checkpoint import load_model_file
    from .segment import Segmenter, load_backbone

    if str(load_model_file(path).get("format", "")).endswith("segmenter"):
        seg = Segmenter.from_file(path)
        return seg, seg.preprocess
    backbone, preprocess, _ = load_backbone(path)
    return backbone, preprocess


def _predict_iter(
    segmenter: Any,
    data: np.ndarray,
    spacing: Sequence[float],
    device: Any,
    should_stop: StopCheck,
    region: Any = None,
) -> Generator[JobProgress, None, Any]:
    """Prediction frame by frame (the same result as one call: frames are normalised
    separately), on the heart ``region`` when given; returns the :class:`Prediction` or
    None when stopped."""
    from .predict import Prediction, predict_volume

    data = np.asarray(data)
    if data.ndim == 3:
        yield JobProgress("predict", 0, 1, message="Segmenting every slice")
        pred = predict_volume(segmenter, data, tuple(spacing), device=device, region=region)
        yield JobProgress("predict", 1, 1)
        return pred
    n = data.shape[0]
    labels, probs = None, None
    for t in range(n):
        if should_stop():
            return None
        p = predict_volume(segmenter, data[t], tuple(spacing)[1:], device=device, region=region)
        if labels is None:
            labels = np.empty(data.shape, dtype=p.labels.dtype)
            probs = np.empty((p.probabilities.shape[0], *data.shape), dtype=np.float16)
        labels[t] = p.labels
        probs[:, t] = p.probabilities
        yield JobProgress("predict", t + 1, n, message=f"Segmented frame {t + 1} of {n}")
    return Prediction(labels, probs)


def segment_job(
    model: Any,
    pairs: Sequence[tuple[np.ndarray, Sequence[float], np.ndarray]],
    target: tuple[np.ndarray, Sequence[float]],
    config: Any = None,
    device: str = "auto",
    names: Sequence[str] | None = None,
    train: bool = True,
    should_stop: StopCheck = _never,
    background: Sequence[Collection[int]] | None = None,
    own: int | None = None,
    on_grid: Sequence[bool] | None = None,
    localise: bool = True,
    propagate: bool = True,
) -> Generator[JobProgress, None, SegmentResult]:
    """Train a segmenter from annotated ``pairs`` ``(image, spacing, labels)``, segment ``target``.

    ``model`` is a backbone/segmenter file path or a ``Segmenter``. With ``train=False``
    the segmenter (``model`` itself, or loaded from a segmenter file) only predicts.
    Training uses only the labels given here (``background``: per pair, flat indices of
    its background-only slices); the returned prediction is for every slice and frame of
    ``target`` ``(image, spacing)``.

    ``own`` is the index of the pair annotating the target itself (None: none);
    ``on_grid`` says per pair whether it is another phase of the target's stack (None:
    same shape and spacing). With ``localise`` prediction runs on the heart region
    (:func:`napari_pix2rep.localise.locate_heart`: the target's paint, else that of the
    pairs on its grid, else the motion of a cine); with ``propagate`` (training only)
    painted slices are carried onto the target first
    (:func:`napari_pix2rep.loop.carry_iter`).
    """
    from .device import release_memory, resolve_device
    from .loop import carry_iter, grid_pairs, heart_region
    from .segment import Segmenter, TrainConfig, train_segmenter_iter

    t0 = time.perf_counter()
    dev = resolve_device(device)
    cfg = config if isinstance(config, TrainConfig) else TrainConfig(**(config or {}))
    pairs = list(pairs)
    names = list(names) if names else [f"image {i + 1}" for i in range(len(pairs))]
    background = [set(b) for b in (background or [])]
    background += [set()] * (len(pairs) - len(background))
    grid = grid_pairs(pairs, target, own, on_grid)
    region = heart_region(pairs, target, own, grid) if localise else None
    if isinstance(model, str | os.PathLike):
        source, preprocess = load_model_source(model)
    else:
        source, preprocess = model, getattr(model, "preprocess", None)
    with cpu_threads(dev):
        try:
            if train:
                if isinstance(source, Segmenter):
                    source = source.backbone  # learn the classes asked for, from its features
                if propagate:
                    extra = yield from carry_iter(
                        pairs, target, own, background, grid, len(cfg.classes), region, should_stop
                    )
                    if extra is None:
                        return SegmentResult(None, None, True, time.perf_counter() - t0)
                    pairs += extra
                    names += ["carried"] * len(extra)
                    background += [set()] * len(extra)
                gen = train_segmenter_iter(
                    source,
                    preprocess,
                    [(np.asarray(img), tuple(sp)) for img, sp, _ in pairs],
                    [np.asarray(lab) for _, _, lab in pairs],
                    cfg,
                    device=dev,
                    names=names,
                    background_slices=background,
                )
                segmenter = None
                while True:
                    try:
                        p = next(gen)
                    except StopIteration as stop:
                        segmenter = stop.value
                        break
                    yield JobProgress(p.stage, p.step, p.total, loss=p.loss, message=p.message)
                    if should_stop():
                        gen.close()
                        return SegmentResult(None, None, True, time.perf_counter() - t0)
            else:
                if not isinstance(source, Segmenter):
                    raise ValueError(
                        "The chosen model is a backbone, not a trained segmenter: press "
                        "Segment to train one first."
                    )
                segmenter = source
            pred = yield from _predict_iter(
                segmenter, target[0], target[1], dev, should_stop, region
            )
        finally:
            release_memory(dev)
    if pred is None:
        return SegmentResult(segmenter, None, True, time.perf_counter() - t0, train)
    uncertainty = pred.uncertainty().astype(np.float16)
    return SegmentResult(segmenter, pred, False, time.perf_counter() - t0, train, uncertainty)
