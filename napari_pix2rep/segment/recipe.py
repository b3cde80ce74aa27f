"""The Segment recipe: images and their painted slices (or none) in, masks and a report out.

:func:`segment_iter` is the one recipe the dock (:func:`napari_pix2rep.jobs.segment_job`),
``pix2rep segment`` and ``pix2rep predict``, the evaluation protocols
(:mod:`napari_pix2rep.evaluation.protocols`) and the benchmarks run. Its steps, each decided by a
field of :class:`~napari_pix2rep.segment.settings.SegmentSettings`:

1. **stacks**: images on one grid (same shape, spacing and, when known, affine) are
   phases of one stack, e.g. a patient's ED and ES.
2. **localise**: one heart region per stack, from the paint of all its images, else the
   motion of a cine or between its 3D phases
   (:func:`~napari_pix2rep.segment.localise.locate_heart`).
3. **carry** (``propagate``): a target's own annotation is completed with the painted
   slices of the other 3D phases of its stack that it has not annotated itself, carried by
   registration; a cine painted in frame f gets them in the frame most different from f
   (:func:`~napari_pix2rep.annotate.loop.carry_plan`,
   :func:`~napari_pix2rep.annotate.loop.cine_carry_plan`).
4. **train** a segmenter per target on every annotated image (the target's annotation as
   completed); targets with nothing carried share one.
5. **predict** every slice and frame of a target; a 3D target with other painted phases in
   its stack is fused with their predictions carried onto it (``fuse``, ``fuse_weight``).
6. **clean up** (``cleanup``) and keep painted slices as painted (``keep_painted``).

The model decides what trains (:func:`plan_for`): a backbone learns as ``training`` says
and cannot segment without painting; a segmenter marked zero-click
(:data:`~napari_pix2rep.model.segmenter.ZERO_CLICK_KEY`, the default cardiac model) predicts
the whole view as is when nothing is painted, and is adapted to the painted slices when
something is: each painted image by the model adapted to the paint, every other image
by the model as is (no slices carried, no fusion: it segments every phase itself); any other
segmenter predicts as is when nothing
is painted (or ``train`` is off) and otherwise lends its backbone. Arrays are in display
order, ``(z, y, x)`` or ``(t, z, y, x)``. torch is imported only when the recipe runs.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Generator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_pix2rep.annotate.loop import carry_plan, cine_carry_plan, heart_paint
from napari_pix2rep.core.progress import Progress, StopCheck, never, relabelled, until_stopped
from napari_pix2rep.segment.recipe_types import (
    Annotation,
    ImageReport,
    Scan,
    SegmentOutcome,
    SegmentReport,
    check_inputs,
    stacks,
)
from napari_pix2rep.segment.settings import SegmentSettings

if TYPE_CHECKING:
    import torch

    from napari_pix2rep.model.nets.unet import UNet
    from napari_pix2rep.model.preprocess import PreprocessConfig
    from napari_pix2rep.model.segmenter import Segmenter
    from napari_pix2rep.segment.localise import HeartRegion
    from napari_pix2rep.segment.predict import Prediction

    #: A segmenter, or a backbone with its preprocessing.
    Model = Segmenter | tuple[UNet, PreprocessConfig]

__all__ = [
    "Annotation",
    "ImageReport",
    "Scan",
    "SegmentOutcome",
    "SegmentReport",
    "plan_for",
    "segment",
    "segment_iter",
]

PREDICT, TRAIN, ADAPT = "predict", "train", "adapt"

NO_PAINT = (
    "No annotated slice, and the model is a backbone, which cannot segment without "
    "painting: paint at least one slice, or choose a segmenter (e.g. the default cardiac "
    "model) that segments without painting."
)


# --------------------------------------------------------------------------- the plan
def plan_for(model: Model, painted: bool, settings: SegmentSettings) -> str:
    """What the model does: :data:`PREDICT`, :data:`TRAIN` (from a backbone) or
    :data:`ADAPT` (fine-tune a zero-click segmenter, when ``adapt_steps`` asks for any);
    ``painted``: any slice painted. A backbone with nothing to learn from raises
    ValueError (one sentence)."""
    from napari_pix2rep.model.segmenter import Segmenter

    if isinstance(model, Segmenter):
        if not settings.train or not painted:
            return PREDICT
        if model.zero_click:
            return ADAPT if settings.train_config().adapt_steps > 0 else PREDICT
        return TRAIN
    if not settings.train:
        raise ValueError(
            "The chosen model is a backbone, not a trained segmenter: press Segment to "
            "train one first."
        )
    if not painted:
        raise ValueError(NO_PAINT)
    return TRAIN


# --------------------------------------------------------------------------- the run
class _Run:
    """One run's state: inputs, stacks, regions, segmenters and predictions so far."""

    def __init__(self, scans, annotations, model, settings, device, should_stop) -> None:
        from napari_pix2rep.model.device import resolve_device

        self.scans, self.anns = list(scans), list(annotations)
        self.model, self.settings = model, settings
        self.device, self.should_stop = resolve_device(device), should_stop
        self.stack = stacks(self.scans)
        painted = any(a is not None and a.painted for a in self.anns)
        self.plan = plan_for(model, painted, settings)
        self.cfg = self._train_config()
        self.regions: dict[int, HeartRegion | None] = {}
        self.notes: dict[int, list[str]] = defaultdict(list)  # per stack: sentences of doubt
        self.segmenters: dict[int | None, Segmenter] = {}  # by the target carried into
        self.used: dict[int, Segmenter] = {}  # the segmenter of each scan predicted
        self.carried: dict[int, list[tuple[str, list[int]]]] = {}
        self.raw: dict[int, np.ndarray] = {}
        self.seconds = dict.fromkeys(("localise", "carry", "train", "predict", "fuse"), 0.0)
        self.reports: dict[int, ImageReport] = {}

    def _train_config(self) -> Any:
        if self.plan == ADAPT:  # the zero-click model's classes, fine-tuned from it
            return self.settings.train_config(mode="finetune", classes=self.model.classes)
        return self.settings.train_config()

    def timed(self, stage: str, gen: Generator) -> Generator[Progress, None, Any]:
        t0 = time.perf_counter()
        try:
            return (yield from gen)
        finally:
            self.seconds[stage] += time.perf_counter() - t0

    def siblings(self, t: int) -> list[int]:
        """The other 3D phases of ``t``'s stack holding paint, in input order."""
        return [
            k
            for k in range(len(self.scans))
            if k != t
            and self.stack[k] == self.stack[t]
            and self.scans[k].data.ndim == 3
            and self.anns[k] is not None
            and self.anns[k].painted
        ]

    # ---------------------------------------------------------------- localise
    def region(self, t: int) -> HeartRegion | None:
        """The heart region of ``t``'s stack (computed once per stack): none for a
        zero-click model (it was trained on the whole view: its own heart estimate, the
        clean-up's connected heart, decides); else from the paint of the stack's images,
        else from its motion, unless the motion cue is in doubt (no clear single peak:
        :func:`~napari_pix2rep.segment.localise.motion_doubt`), when the whole view is
        segmented and the doubt noted."""
        from napari_pix2rep.segment.localise import locate_heart

        first = self.stack[t]
        if not self.settings.localise or getattr(self.model, "zero_click", False):
            return None
        if first not in self.regions:
            t0 = time.perf_counter()
            members = [k for k in range(len(self.scans)) if self.stack[k] == first]
            paint = heart_paint(self.anns[k].labels for k in members if self.anns[k] is not None)
            scan = self.scans[first]
            others = [self.scans[k].data for k in members[1:] if self.scans[k].data.ndim == 3]
            region = locate_heart(scan.data, scan.spacing, annotation=paint, other_frames=others)
            if region is not None and region.source == "motion" and region.note:
                self.notes[first].append(
                    f"{region.note} The whole view was segmented instead; check the masks."
                )
                region = None
            self.regions[first] = region
            self.seconds["localise"] += time.perf_counter() - t0
        return self.regions[first]

    # ---------------------------------------------------------------- carry, train
    def completed(self, t: int) -> Generator[Progress, None, tuple[Any, list]]:
        """``t``'s labels completed with the slices carried onto it, and what was carried
        (``(from, flat slices)``); its own labels (or None) when nothing is carried."""
        scan, ann = self.scans[t], self.anns[t]
        own = np.asarray(ann.labels) if ann is not None else None
        jobs = self._carry_jobs(t, own, ann.background if ann is not None else frozenset())
        if not jobs:
            return own, []
        merged = np.zeros(scan.data.shape, np.int64) if own is None else own.astype(np.int64)
        carried = yield from self.timed("carry", self._carry(jobs, merged, t))
        return merged, carried

    def _carry_jobs(self, t: int, own: np.ndarray | None, own_bg: frozenset[int]) -> list:
        """``(from, source volume, target volume, source labels, slices, frame)`` to carry."""
        scan = self.scans[t]
        if not self.settings.propagate or self.plan == ADAPT:
            return []  # a zero-click model segments the other phases itself
        if scan.data.ndim == 4:
            plan = cine_carry_plan(scan.data, own, own_bg) if own is not None else None
            if plan is None:
                return []
            f, g, todo = plan
            return [(f"frame {f}", scan.data[f], scan.data[g], own[f], todo, g)]
        sib = self.siblings(t)
        return [
            (
                self.scans[sib[j]].name,
                self.scans[sib[j]].data,
                scan.data,
                self.anns[sib[j]].labels,
                todo,
                None,
            )
            for j, todo in carry_plan(own, own_bg, [self.anns[k].labels for k in sib])
        ]

    def _carry(self, jobs: list, merged: np.ndarray, t: int) -> Generator[Progress, None, list]:
        """Carry each job's slices into ``merged`` (in place), one registration per slice."""
        from napari_pix2rep.segment.propagate import carry_slices_iter

        scan, region, carried = self.scans[t], self.region(t), []
        for name, src, dst, lab, todo, frame in jobs:
            where = f"to frame {frame}" if frame is not None else f"to {scan.name}"
            msg = f"Carrying {len(todo)} painted slice{'s' if len(todo) > 1 else ''} {where}"
            gen = carry_slices_iter(
                src,
                dst,
                lab,
                todo,
                len(self.cfg.classes),
                region,
                self.settings.registration,
                self.should_stop,
                msg,
            )
            planes = yield from gen
            if planes is None:
                raise _Stopped
            (merged if frame is None else merged[frame])[todo] = planes[todo]
            nz = scan.data.shape[-3]
            carried.append((name, [z if frame is None else frame * nz + z for z in todo]))
        total = sum(len(s) for _, s in carried)
        yield Progress("carry", total, total, message=f"Carried {total} painted slices")
        return carried

    def segmenter_for(self, t: int) -> Generator[Progress, None, Segmenter]:
        """The segmenter that predicts ``t``: the model itself (:data:`PREDICT`), else one
        trained on every annotated image with ``t``'s annotation completed (once per
        ``t``; targets with nothing carried share one)."""
        if self.plan == PREDICT:
            return self.model
        if self.plan == ADAPT and not (self.anns[t] is not None and self.anns[t].annotated):
            return self.model  # an unpainted image keeps the zero-click model's masks
        if t not in self.used:
            labels, self.carried[t] = yield from self.completed(t)
            key = t if self.carried[t] else None
            if key not in self.segmenters:
                self.segmenters[key] = yield from self._train(key, labels)
            self.used[t] = self.segmenters[key]
        return self.used[t]

    def _start(self) -> tuple[UNet | Segmenter, PreprocessConfig]:
        """What training starts from: the zero-click segmenter itself (:data:`ADAPT`), else
        the backbone (a segmenter's, its classes learnt anew) and the preprocessing."""
        from napari_pix2rep.model.segmenter import Segmenter

        if self.plan == ADAPT:
            return self.model, self.model.preprocess
        if isinstance(self.model, Segmenter):
            return self.model.backbone, self.model.preprocess
        return self.model

    def _train(
        self, t: int | None, completed: np.ndarray | None
    ) -> Generator[Progress, None, Segmenter]:
        """A segmenter trained on every annotated scan, ``t``'s labels ``completed``."""
        images, labels, background, names = [], [], [], []
        for k, (scan, ann) in enumerate(zip(self.scans, self.anns)):
            lab = (
                completed
                if k == t
                else (ann.labels if ann is not None and ann.annotated else None)
            )
            if lab is None:
                continue
            images.append((scan.data, scan.spacing))
            labels.append(lab)
            background.append(set(ann.background) if ann is not None else set())
            names.append(scan.name)
        from napari_pix2rep.segment.training import train_until_stopped

        gen = train_until_stopped(
            *self._start(),
            images,
            labels,
            self.cfg,
            self.device,
            names,
            background,
            self.should_stop,
        )
        seg = yield from self.timed("train", gen)
        if seg is None:
            raise _Stopped
        seg.meta["segment_settings"] = {**self.settings.to_dict(), "training": self.cfg.to_dict()}
        return seg

    # ---------------------------------------------------------------- predict, fuse
    def probabilities(
        self, k: int, message: str | None = None
    ) -> Generator[Progress, None, np.ndarray]:
        """Class probabilities ``(K, *shape)`` of scan ``k`` by its segmenter, before the
        clean-up (computed once)."""
        from napari_pix2rep.segment.predict import predict_iter

        if k not in self.raw:
            seg = yield from self.segmenter_for(k)
            scan = self.scans[k]
            gen = predict_iter(
                seg,
                scan.data,
                scan.spacing,
                self.device,
                cleanup=False,
                region=self.region(k),
                flip_average=self.settings.flip_average,
            )
            if message:
                gen = relabelled(gen, message)
            stopped, pred = yield from self.timed("predict", until_stopped(gen, self.should_stop))
            if stopped:
                raise _Stopped
            self.raw[k] = pred.probabilities
        return self.raw[k]

    def target(self, t: int) -> Generator[Progress, None, Prediction]:
        """The masks of target ``t``: predicted, fused, cleaned up, painted slices kept."""
        from napari_pix2rep.measure.metrics import segmentation_warnings
        from napari_pix2rep.segment.predict import label_probabilities
        from napari_pix2rep.segment.propagate import fuse_iter

        scan, s = self.scans[t], self.settings
        region = self.region(t)
        own = yield from self.probabilities(t)
        fused = s.propagate and s.fuse and self.plan == TRAIN and scan.data.ndim == 3
        sources = (
            [k for k in self.siblings(t) if not np.array_equal(self.scans[k].data, scan.data)]
            if fused
            else []
        )
        others = []
        for k in sources:
            others.append(
                (
                    self.scans[k].data,
                    (yield from self.probabilities(k, "Segmenting the other phase")),
                )
            )
        if others:
            gen = fuse_iter(
                own,
                scan.data,
                others,
                s.cleanup,
                region,
                self.should_stop,
                s.registration,
                s.fuse_weight,
            )
            pred = yield from self.timed("fuse", gen)
            if pred is None:
                raise _Stopped
        else:
            pred = label_probabilities(own, s.cleanup, region)
        self.reports[t] = ImageReport(
            scan.name,
            self._how(t),
            region.source if region is not None else None,
            self.carried.get(t, []),
            [self.scans[k].name for k in sources],
            [*self.notes[self.stack[t]], *segmentation_warnings(pred.labels)],
        )
        ann = self.anns[t]
        if s.keep_painted and ann is not None and self.cfg.annotation_mode == "full":
            pred = replace(pred, labels=ann.overlay(pred.labels, pred.probabilities.shape[0]))
        return pred

    def _how(self, t: int) -> str:
        if self.plan == PREDICT or (self.plan == ADAPT and self.used.get(t) is None):
            return "zero clicks" if self.model.zero_click else "segmenter"
        if self.plan == ADAPT:
            return "adapted"
        return "linear probe" if self.cfg.mode == "linear" else "fine-tuned"

    def report(self, targets: Sequence[int]) -> SegmentReport:
        images = [self.reports[t] for t in targets if t in self.reports]
        return SegmentReport(images, dict(self.seconds), self.settings.to_dict())


class _Stopped(Exception):
    """``should_stop()`` said so at a step boundary."""


# --------------------------------------------------------------------------- the recipe
def segment_iter(
    scans: Sequence[Scan],
    annotations: Sequence[Annotation | None],
    model: Model,
    settings: SegmentSettings | None = None,
    device: str | torch.device = "auto",
    should_stop: StopCheck = never,
    targets: Sequence[int] | None = None,
) -> Generator[Progress, None, SegmentOutcome]:
    """Segment ``targets`` (indices into ``scans``; None: every scan), see the module
    docstring. ``annotations`` has one entry per scan (None: not painted); ``model`` is a
    :class:`~napari_pix2rep.model.segmenter.Segmenter` or ``(backbone, preprocessing)``. Yields
    :class:`~napari_pix2rep.core.progress.Progress`, asks ``should_stop()`` between steps and
    returns a :class:`SegmentOutcome` (``cancelled`` when stopped). Bad input raises
    ValueError with one sentence."""
    from napari_pix2rep.model.device import release_memory

    scans, annotations = list(scans), list(annotations)
    check_inputs(scans, annotations)
    run = _Run(scans, annotations, model, settings or SegmentSettings(), device, should_stop)
    targets = list(range(len(scans)) if targets is None else targets)
    masks = {}
    try:
        for t in targets:
            masks[t] = yield from run.target(t)
    except _Stopped:
        return SegmentOutcome({}, {}, {}, run.report(targets), cancelled=True)
    finally:
        release_memory(run.device)
    regions = {t: run.region(t) for t in targets}
    segmenters = {t: run.used.get(t, model) for t in targets}
    trained = any(t in run.used for t in targets)
    return SegmentOutcome(masks, segmenters, regions, run.report(targets), False, trained)


def segment(*args: Any, progress: Any = None, **kwargs: Any) -> SegmentOutcome:
    """:func:`segment_iter` run to the end (scripts, protocols)."""
    from napari_pix2rep.core.progress import run_to_end

    return run_to_end(segment_iter(*args, **kwargs), progress)
