"""The dock's segmentation loop as a plain object: :class:`SegmentationSession`.

The session holds the loop's state -- the last trained segmenter, and per segmentation
layer the prediction last written to it and its uncertainty -- and its rules: which
(image, annotation) pairs train, what ``jobs.segment_job`` (the Segment recipe,
:mod:`napari_pix2rep.segment.recipe`) gets, which edits are
corrections not yet used, how "Use corrections" changes the annotation layer, which
slice to annotate next and where that lies in world coordinates. The dock's Segment tab
only shows it; the tests drive it without Qt.

It works on layer-like objects: anything with ``name``, ``data`` (``(z, y, x)`` or
``(t, z, y, x)``), ``metadata`` (:mod:`napari_pix2rep.io.layer_meta`), ``scale`` and,
optionally, ``translate`` (napari layers, or plain objects in tests). Writes go through
the ``write`` / ``write_indices`` callables given at construction (the dock passes
history-recording ones, so each is one undoable edit). Events are psygnal signals:
:attr:`~SegmentationSession.prediction_applied`, :attr:`~SegmentationSession.corrections_used`
and :attr:`~SegmentationSession.segmenter_changed`.

Imports neither Qt nor torch (``jobs.segment_job`` and the ``Segmenter`` stay with the
caller; a segmenter is duck-typed: ``.save(path)``, ``.meta``).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from psygnal import Signal

from napari_pix2rep.annotate.edits import (
    edited_slices,
    format_positions,
    slice_update,
    suggest_slice,
)
from napari_pix2rep.annotate.loop import (
    BACKGROUND_KEY,
    annotation_summary,
    background_of,
    corrected_background,
)
from napari_pix2rep.io.layer_meta import (
    ANNOTATION,
    image_of,
    layer_affine,
    layer_spacing,
    linked_layer,
    role,
    same,
    unwrap,
)
from napari_pix2rep.segment.recipe import Annotation, Scan

if TYPE_CHECKING:
    from napari_pix2rep.segment.settings import SegmentSettings

#: "train": learn from the annotations, then segment; "predict": the segmenter only.
TRAIN, PREDICT = "train", "predict"


class SessionError(ValueError):
    """A loop action that cannot be done now; the message is one sentence for the user."""


def _shape(layer: Any) -> tuple[int, ...]:
    return tuple(np.shape(layer.data))


def _spacing(layer: Any) -> tuple[float, ...]:
    return layer_spacing(layer.metadata, layer.scale, len(_shape(layer)))


def _affine(layer: Any) -> np.ndarray | None:
    affine = layer_affine(layer.metadata)
    return None if affine is None else np.asarray(affine, dtype=float)


def background(layer: Any) -> set[int]:
    """The background-only slices (flat indices) an annotation layer lists."""
    return background_of(layer.metadata, int(np.prod(_shape(layer)[:-2])))


def describe_annotation(layer: Any) -> str:
    """Which slices an annotation layer annotates: ``"slices 2, 5 (background only: slice 7)"``."""
    positions, empty = annotation_summary(np.asarray(layer.data), background(layer))
    text = format_positions(positions)
    return f"{text} (background only: {format_positions(empty)})" if empty else text


def _default_write(layer: Any, new: np.ndarray) -> None:
    layer.data[...] = new


def _default_write_indices(layer: Any, indices: tuple, values: np.ndarray) -> None:
    layer.data[indices] = values


@dataclass(frozen=True)
class Corrections:
    """What "Use corrections" copied from a segmentation layer into an annotation layer.

    ``positions``: the corrected slices ``(z,)`` / ``(t, z)``; ``emptied``: those left all
    background (erased false positives, now background-only); ``background``: the
    annotation's new background-only list (flat indices).
    """

    positions: list[tuple[int, ...]]
    emptied: list[tuple[int, ...]]
    background: list[int]

    def message(self, annotation_name: str) -> str:
        extra = (
            f" ({format_positions(self.emptied)} now empty: marked background only)"
            if self.emptied
            else ""
        )
        where = format_positions(self.positions)
        return (
            f"Copied {len(self.positions)} corrected slice(s) ({where}) into "
            f"'{annotation_name}'{extra}; press Segment to learn from them."
        )


@dataclass(frozen=True)
class Suggestion:
    """The slice to annotate next: ``position`` ``(z,)`` / ``(t, z)`` in the layer, its mean
    uncertainty ``score`` in the predicted heart, and ``world``: the world coordinate of
    each of those leading axes (``translate + index * scale``)."""

    position: tuple[int, ...]
    score: float
    world: tuple[float, ...]

    def dims_points(self, viewer_ndim: int, layer_ndim: int) -> list[tuple[int, float]]:
        """``(viewer axis, world coordinate)`` to set on the viewer's dims: the layer's
        axes are the viewer's last ``layer_ndim``."""
        offset = viewer_ndim - layer_ndim
        return [(offset + axis, w) for axis, w in enumerate(self.world)]

    def message(self) -> str:
        p = self.position
        where = f"slice {p[1]} of frame {p[0]}" if len(p) == 2 else f"slice {p[0]}"
        return f"Suggested {where}: mean uncertainty {self.score:.2f} in the predicted heart."


@dataclass
class Job:
    """The running job: its kind (:data:`TRAIN` / :data:`PREDICT`) and the image it
    segments, by name and by id (:func:`napari_pix2rep.io.layer_meta.image_id`, so the
    result still finds the image when it is renamed meanwhile)."""

    kind: str
    image: str
    image_id: str | None = None


class SegmentationSession:
    """The annotation loop's state and rules: annotate, segment, correct, repeat.

    Events (psygnal): ``prediction_applied(layer, unused)`` after a prediction is written
    (``unused``: corrected slices it replaced that had not been used);
    ``corrections_used(annotation, Corrections)``; ``segmenter_changed(segmenter)``.
    """

    prediction_applied = Signal(object, list)
    corrections_used = Signal(object, object)
    segmenter_changed = Signal(object)

    def __init__(
        self,
        write: Callable[[Any, np.ndarray], Any] = _default_write,
        write_indices: Callable[[Any, tuple, np.ndarray], Any] = _default_write_indices,
    ) -> None:
        self._write, self._write_indices = write, write_indices
        self.segmenter: Any = None  # the last trained segmenter, kept for re-use
        self.segmenter_source = ""  # the image it learned from
        self.job: Job | None = None
        # per segmentation layer: (last prediction written, its uncertainty as float16)
        self._predictions: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    # ------------------------------------------------------------------ training pairs
    @staticmethod
    def owner(annotation: Any, image: Any, images: Sequence[Any]) -> Any:
        """The image an annotation layer was painted on: the one the dock made it for
        when that is open (in ``images``) on the same grid -- ED's annotations chosen for
        ES teach on ED and are carried to ES -- else ``image``."""
        painted_on = image_of(images, annotation.metadata)
        if role(annotation.metadata) != ANNOTATION or painted_on is None:
            return image
        return painted_on if _shape(painted_on) == _shape(annotation) else image

    def training_pairs(
        self,
        image: Any,
        annotation: Any,
        images: Sequence[Any],
        labels: Sequence[Any],
        all_images: bool = True,
    ) -> list[tuple[Any, Any]]:
        """``(image, annotation)`` pairs a Segment of ``image`` learns from, chosen first.

        The chosen ``annotation`` teaches on its :meth:`owner`; with ``all_images`` every
        other annotation layer the dock made for another open image (in ``images``, on
        that image's grid, holding paint or background-only slices) is added. ``labels``
        are the open labels layers.
        """
        pairs = []
        if image is not None and annotation is not None:
            pairs.append((self.owner(annotation, image, images), annotation))
        if not all_images:
            return pairs
        for layer in labels:
            if role(layer.metadata) != ANNOTATION or same(layer, annotation):
                continue
            img = image_of(images, layer.metadata)
            if img is None or same(img, image) or _shape(img) != _shape(layer):
                continue
            if np.any(layer.data) or background(layer):
                pairs.append((img, layer))
        return pairs

    def own_annotation(
        self, image: Any, chosen: Any, images: Sequence[Any], layers: Sequence[Any]
    ) -> Any | None:
        """Where corrections of ``image`` go: the ``chosen`` annotation layer when it was
        painted on ``image``, else the one the dock made for ``image`` (None: none) --
        corrections of ES never go into ED's annotations."""
        if image is None:
            return None
        if chosen is not None and same(self.owner(chosen, image, images), image):
            return chosen
        return linked_layer(layers, image, ANNOTATION)

    # ------------------------------------------------------------------ segment_job inputs
    def segment_inputs(
        self,
        model: Any,
        image: Any,
        pairs: Sequence[tuple[Any, Any]],
        *,
        settings: SegmentSettings,
        device: str,
    ) -> tuple[tuple, dict[str, Any]]:
        """``(args, kwargs)`` for ``jobs.segment_job(*args, **kwargs)``.

        ``args`` = ``(model, scans, annotations)``: a :class:`~napari_pix2rep.segment.recipe.Scan`
        per image of ``pairs`` (an image once, its first annotation), then ``image`` when
        it has none, with its name, spacing and affine; per scan its
        :class:`~napari_pix2rep.segment.recipe.Annotation` (labels copied when ``settings.train``,
        so painting meanwhile changes nothing; its background-only slices) or None.
        ``kwargs``: ``target`` (the index of ``image``), ``settings`` and ``device``.
        """
        layers: list[tuple[Any, Any]] = []
        for img, ann in pairs:
            if not any(same(img, seen) for seen, _ in layers):
                layers.append((img, ann))
        if not any(same(img, image) for img, _ in layers):
            layers.append((image, None))
        scans = [
            Scan(np.asarray(img.data), _spacing(img), img.name, _affine(img)) for img, _ in layers
        ]
        annotations = [
            None
            if ann is None
            else Annotation(
                np.array(ann.data, copy=True),  # painting meanwhile changes nothing
                frozenset(background(ann)),
            )
            for _, ann in layers
        ]
        kwargs = {
            "target": next(k for k, (img, _) in enumerate(layers) if same(img, image)),
            "settings": settings,
            "device": device,
        }
        return (model, scans, annotations), kwargs

    @staticmethod
    def check_segment(image: Any, model_path: str | None) -> None:
        """Raise :class:`SessionError` (one sentence) when Segment cannot start: no image
        or no model file chosen. Nothing painted is for the recipe to judge: a model that
        segments without painting needs none (:func:`napari_pix2rep.segment.recipe.plan_for`)."""
        if image is None:
            raise SessionError("Open a 3D or 4D image first.")
        if not model_path:
            raise SessionError(
                "No model chosen: pick a backbone file or pretrain one (Pretrain tab)."
            )

    def predict_model(self, model_path: str | None) -> Any:
        """What "Predict with current" runs: the trained segmenter, else the model file."""
        if self.segmenter is not None:
            return self.segmenter
        if not model_path:
            raise SessionError("No segmenter yet: press Segment first.")
        return model_path

    # ------------------------------------------------------------------ jobs
    def start_job(self, kind: str, image_name: str, image_id: str | None = None) -> Job:
        self.job = Job(kind, image_name, image_id)
        return self.job

    def finish_job(self, result: Any) -> str:
        """Keep a newly trained segmenter; returns how the result was made (the result's
        ``how``: "linear probe", "fine-tuned", "zero clicks, default.pt", ...; "current
        segmenter" for a prediction with the segmenter in memory). ``result``: a
        ``jobs.SegmentResult`` that was not cancelled."""
        job, self.job = self.job or Job(PREDICT, ""), None
        if result.trained:
            self.segmenter, self.segmenter_source = result.segmenter, job.image
            self.segmenter_changed.emit(result.segmenter)
        if job.kind != TRAIN and result.how == "segmenter":
            return "current segmenter"
        return result.how

    def save_segmenter(self, path: str) -> str:
        """Save the trained segmenter to ``path``; returns where it went."""
        if self.segmenter is None:
            raise SessionError("No segmenter trained yet: press Segment first.")
        return str(self.segmenter.save(path))

    def segmenter_file_name(self) -> str:
        return f"{self.segmenter_source or 'pix2rep'}_segmenter.pt"

    # ------------------------------------------------------------------ predictions
    def prediction(self, layer: Any) -> tuple[np.ndarray, np.ndarray] | None:
        """``(labels, uncertainty)`` last written to ``layer`` by :meth:`apply_prediction`,
        None when unknown or the layer's shape has changed since."""
        known = self._predictions.get(unwrap(layer)) if layer is not None else None
        if known is None or known[0].shape != _shape(layer):
            return None
        return known

    def unused_corrections(self, layer: Any, annotation: Any = None) -> list[tuple[int, ...]]:
        """Slices edited in ``layer`` since its last prediction whose edit is not (yet) in
        ``annotation``: what a new prediction would replace."""
        known = self.prediction(layer)
        if known is None:
            return []
        edited = edited_slices(np.asarray(layer.data), known[0])
        if annotation is None:
            return edited
        ann = np.asarray(annotation.data)
        return [p for p in edited if not np.array_equal(ann[p], np.asarray(layer.data)[p])]

    def apply_prediction(
        self, layer: Any, labels: np.ndarray, uncertainty: np.ndarray, annotation: Any = None
    ) -> list[tuple[int, ...]]:
        """Write a prediction ``labels`` (the layer's shape) into the segmentation ``layer``
        and remember it with its ``uncertainty``; annotation layers are never written.

        Returns (and emits with ``prediction_applied``) the corrected slices it replaced
        that had not been copied into ``annotation`` (the image's own annotation layer).
        """
        labels = np.asarray(labels)
        if labels.shape != _shape(layer):
            raise SessionError(
                f"The result {labels.shape} does not fit the layer {_shape(layer)}."
            )
        unused = self.unused_corrections(layer, annotation)
        self._write(layer, labels)
        self._predictions[unwrap(layer)] = (labels.copy(), np.asarray(uncertainty))
        self.prediction_applied.emit(layer, unused)
        return unused

    # ------------------------------------------------------------------ corrections
    def corrected_slices(self, layer: Any) -> list[tuple[int, ...]]:
        """Slices of the segmentation ``layer`` the user edited since its last prediction."""
        known = self.prediction(layer)
        if known is None:
            raise SessionError(
                "The prediction of this segmentation layer is not known here, so edits "
                "cannot be told apart: press Segment first."
            )
        return edited_slices(np.asarray(layer.data), known[0])

    def use_corrections(
        self, layer: Any, annotation: Any, positions: Sequence[tuple[int, ...]] | None = None
    ) -> Corrections:
        """Copy the corrected slices (``positions``, default :meth:`corrected_slices`) of
        the segmentation ``layer`` into ``annotation`` as one write; a corrected slice
        left all 0 becomes background-only (``metadata["pix2rep_background_slices"]``)."""
        positions = list(self.corrected_slices(layer) if positions is None else positions)
        seg = np.asarray(layer.data)
        indices, values = slice_update(np.asarray(annotation.data), seg, positions)
        self._write_indices(annotation, indices, values)
        bg = sorted(corrected_background(seg, positions, background(annotation)))
        annotation.metadata[BACKGROUND_KEY] = bg
        done = Corrections(positions, [p for p in positions if not np.any(seg[p])], bg)
        self.corrections_used.emit(annotation, done)
        return done

    # ------------------------------------------------------------------ next slice
    def suggest_next(self, layer: Any, annotation: Any = None) -> Suggestion | None:
        """The slice of the segmentation ``layer`` to annotate next: the highest mean
        uncertainty inside the predicted heart, skipping those ``annotation`` already
        annotates (painted or background-only). None when every such slice is annotated."""
        known = self.prediction(layer)
        if known is None:
            raise SessionError("No prediction yet: press Segment first.")
        labels, uncertainty = known
        exclude = (
            annotation_summary(np.asarray(annotation.data), background(annotation))[0]
            if annotation is not None
            else []
        )
        found = suggest_slice(uncertainty, labels, exclude)
        if found is None:
            return None
        position, score = found
        scale = tuple(float(s) for s in layer.scale)
        translate = tuple(float(t) for t in getattr(layer, "translate", (0.0,) * len(scale)))
        world = tuple(translate[a] + i * scale[a] for a, i in enumerate(position))
        return Suggestion(position, score, world)
