"""The Segment recipe's inputs and results as values (:mod:`napari_pix2rep.segment.recipe`).

Inputs: a :class:`Scan` per image and, per scan, its :class:`Annotation` (or None).
Results: a :class:`SegmentOutcome` with the masks per target and a :class:`SegmentReport`
(one :class:`ImageReport` per target: how its masks were made, what was carried, fused and
localised; seconds per stage; the settings). Arrays are in display order, ``(z, y, x)``
or ``(t, z, y, x)``. No torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_pix2rep.annotate.loop import on_same_grid, painted_slices

if TYPE_CHECKING:
    from napari_pix2rep.model.segmenter import Segmenter
    from napari_pix2rep.segment.localise import HeartRegion
    from napari_pix2rep.segment.predict import Prediction

__all__ = [
    "Annotation",
    "ImageReport",
    "Scan",
    "SegmentOutcome",
    "SegmentReport",
    "check_inputs",
    "stacks",
]


@dataclass(frozen=True)
class Scan:
    """An image: ``data`` ``(z, y, x)`` or ``(t, z, y, x)``, its ``spacing`` in the same
    order, a ``name`` for messages and, when known, the NIfTI ``affine`` (4 x 4)."""

    data: np.ndarray
    spacing: tuple[float, ...]
    name: str = "image"
    affine: np.ndarray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", np.asarray(self.data))
        object.__setattr__(self, "spacing", tuple(float(v) for v in self.spacing))


@dataclass(frozen=True)
class Annotation:
    """What was painted on a :class:`Scan`: ``labels`` (its shape, the ``full`` convention
    of :mod:`napari_pix2rep.annotate.annotations`) and the flat indices of its background-only
    slices."""

    labels: np.ndarray
    background: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", np.asarray(self.labels))
        object.__setattr__(self, "background", frozenset(int(i) for i in self.background))

    @property
    def painted(self) -> bool:
        return bool(np.any(self.labels))

    @property
    def annotated(self) -> bool:
        """Painted, or holding background-only slices: it teaches."""
        return self.painted or bool(self.background)

    def overlay(self, labels: np.ndarray, n_classes: int) -> np.ndarray:
        """``labels`` (the scan's shape) with every painted and background-only slice as
        annotated (values outside the classes, e.g. ``IGNORE``, keep ``labels``)."""
        out = np.array(labels, copy=True)
        flat = out.reshape(-1, *out.shape[-2:])
        lab = self.labels.reshape(flat.shape)
        rows = set(painted_slices(lab)) | {i for i in self.background if 0 <= i < len(flat)}
        for i in sorted(rows):
            ok = (lab[i] >= 0) & (lab[i] < n_classes)
            flat[i][ok] = lab[i][ok]
        return out


@dataclass
class ImageReport:
    """What the recipe did for one target: ``how`` its masks were made ("linear probe",
    "fine-tuned", "adapted", "zero clicks" or "segmenter"), where the heart region came
    from (``region``: "annotation", "motion" or None: the whole view, where the clean-up's
    connected-heart rule picks the model's own heart), the slices carried onto it
    (``(from image, flat slices)``), the images it was fused with and ``notes``: sentences
    of doubt a user must see (a motion cue that was not trusted, an empty mask)."""

    name: str
    how: str
    region: str | None = None
    carried: list[tuple[str, list[int]]] = field(default_factory=list)
    fused_with: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def line(self, how: str | None = None) -> str:
        """For people: ``linear probe, heart region from the annotation, ...`` (``how``
        replaces the first part)."""
        parts = [how or self.how]
        parts.append(f"heart region from the {self.region}" if self.region else "whole view")
        n = sum(len(s) for _, s in self.carried)
        if n:
            parts.append(
                f"{n} painted slice(s) carried from {', '.join(a for a, _ in self.carried)}"
            )
        if self.fused_with:
            parts.append(f"fused with {', '.join(self.fused_with)}")
        return ", ".join(parts)


@dataclass
class SegmentReport:
    """The run: one :class:`ImageReport` per target, seconds per stage ("localise",
    "carry", "train", "predict", "fuse") and the settings (plain values)."""

    images: list[ImageReport]
    seconds: dict[str, float]
    settings: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "images": [vars(r) for r in self.images],
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "settings": self.settings,
        }


@dataclass
class SegmentOutcome:
    """Per target index: its :class:`~napari_pix2rep.segment.predict.Prediction` (labels with the
    painted slices as painted when ``keep_painted``), the segmenter that predicted it and
    its heart region; the report. Empty dicts when ``cancelled``."""

    masks: dict[int, Prediction]
    segmenters: dict[int, Segmenter]
    regions: dict[int, HeartRegion | None]
    report: SegmentReport
    cancelled: bool = False
    trained: bool = False


def stacks(scans: Sequence[Scan]) -> list[int]:
    """Per scan, the index of the first scan of its stack (same grid)."""
    out: list[int] = []
    for k, s in enumerate(scans):
        first = next(
            (
                j
                for j in range(k)
                if out[j] == j
                and on_same_grid(s.data.shape, s.spacing, s.affine, *_grid(scans[j]))
            ),
            k,
        )
        out.append(first)
    return out


def _grid(s: Scan) -> tuple:
    return s.data.shape, s.spacing, s.affine


def check_inputs(scans: Sequence[Scan], annotations: Sequence[Annotation | None]) -> None:
    """ValueError (one sentence) unless every scan is 3D or 4D with an annotation (or
    None) on its grid."""
    if len(annotations) != len(scans):
        raise ValueError("Give one annotation (or None) per image.")
    for s, a in zip(scans, annotations):
        if s.data.ndim not in (3, 4):
            raise ValueError(f"{s.name}: expected a 3D or 4D image, got {s.data.ndim} dimensions.")
        if a is not None and np.shape(a.labels) != s.data.shape:
            raise ValueError(
                f"{s.name}: the annotation {np.shape(a.labels)} is not on the image's grid "
                f"{s.data.shape}."
            )
