"""Tests of napari_pix2rep.segment.session: the dock's loop without Qt, on layer-like objects."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pytest

from napari_pix2rep.annotate.loop import BACKGROUND_KEY
from napari_pix2rep.io.layer_meta import ANNOTATION, METADATA_KEY, SEGMENTATION, role_metadata
from napari_pix2rep.segment.session import (
    PREDICT,
    TRAIN,
    SegmentationSession,
    SessionError,
    describe_annotation,
    same,
)
from napari_pix2rep.segment.settings import SegmentSettings

SHAPE = (4, 8, 8)


@dataclass(eq=False)
class Layer:
    """What the session needs of a napari layer."""

    name: str
    data: np.ndarray
    metadata: dict = field(default_factory=dict)
    scale: tuple = (10.0, 1.5, 1.5)
    translate: tuple = (0.0, 0.0, 0.0)


class Proxy:
    """Like napari's PublicOnlyProxy: a new wrapper object around the layer."""

    def __init__(self, obj):
        self.__wrapped__ = obj

    def __getattr__(self, name):
        return getattr(self.__wrapped__, name)


def image(name, shape=SHAPE, affine=None):
    meta = {METADATA_KEY: {"spacing": [10.0, 1.5, 1.5][-len(shape) :], "source_path": None}}
    if affine is not None:
        meta[METADATA_KEY]["affine"] = affine
    data = np.random.default_rng(len(name)).random(shape).astype(np.float32)
    return Layer(name, data, meta)


def made_for(img, which, paint=()):
    """A labels layer the dock made for ``img``, ``paint``: slices filled with label 3."""
    layer = Layer(f"{img.name} {which}", np.zeros(img.data.shape, np.uint8))
    layer.metadata = role_metadata(img.metadata, which, img.name, ["background", "RV"])
    for pos in paint:
        layer.data[pos][2:6, 2:6] = 3
    return layer


def prediction(shape=SHAPE):
    """A prediction with a 'heart' (label 2) on every slice."""
    labels = np.zeros(shape, np.uint8)
    labels[..., 3:6, 3:6] = 2
    return labels


# ------------------------------------------------------------------ predictions
def test_apply_prediction_writes_the_layer_never_the_annotation_and_reports_unused_edits():
    writes = []

    def write(layer, new):
        writes.append(layer.name)
        layer.data[...] = new

    session = SegmentationSession(write=write)
    img = image("scan")
    ann, seg = made_for(img, ANNOTATION, paint=[(0,)]), made_for(img, SEGMENTATION)
    painted = ann.data.copy()
    got = []
    session.prediction_applied.connect(lambda layer, unused: got.append((layer, unused)))

    first = prediction()
    assert session.apply_prediction(seg, first, np.zeros(SHAPE, np.float16), ann) == []
    np.testing.assert_array_equal(seg.data, first)
    np.testing.assert_array_equal(ann.data, painted)
    assert writes == [seg.name] and got == [(seg, [])]

    seg.data[1, 0, 0] = 1  # an edit never used
    seg.data[2, 0, 0] = 1  # an edit copied into the annotation
    session.use_corrections(seg, ann, [(2,)])
    second = prediction()
    second[3] = 1
    assert session.apply_prediction(seg, second, np.ones(SHAPE, np.float16), ann) == [(1,)]
    assert got[-1] == (seg, [(1,)])
    np.testing.assert_array_equal(seg.data, second)
    np.testing.assert_array_equal(ann.data[0], painted[0])  # painted voxels untouched
    labels, uncertainty = session.prediction(seg)
    np.testing.assert_array_equal(labels, second)
    assert uncertainty.dtype == np.float16 and uncertainty.max() == 1
    with pytest.raises(SessionError, match="does not fit"):
        session.apply_prediction(seg, np.zeros((2, 8, 8)), np.zeros((2, 8, 8)))


def test_prediction_is_known_through_a_proxy_and_forgotten_when_the_shape_changes():
    session = SegmentationSession()
    seg = made_for(image("scan"), SEGMENTATION)
    proxy = Proxy(seg)
    assert same(seg, proxy) and not same(seg, None)
    session.apply_prediction(seg, prediction(), np.zeros(SHAPE))
    assert session.prediction(proxy) is not None
    seg.data = np.zeros((2, 8, 8), np.uint8)
    assert session.prediction(seg) is None


# ------------------------------------------------------------------ corrections
def test_corrections_copy_edited_slices_and_erased_false_positives_become_background():
    session = SegmentationSession()
    img = image("scan")
    ann, seg = made_for(img, ANNOTATION, paint=[(0,)]), made_for(img, SEGMENTATION)
    with pytest.raises(SessionError, match="not known here"):
        session.corrected_slices(seg)
    session.apply_prediction(seg, prediction(), np.zeros(SHAPE))
    assert session.corrected_slices(seg) == []

    seg.data[1, 0:2, 0:2] = 1  # a correction
    seg.data[3] = 0  # a false positive erased: the slice holds no heart
    used = []
    session.corrections_used.connect(lambda layer, done: used.append((layer, done)))
    done = session.use_corrections(seg, ann)
    assert done.positions == [(1,), (3,)] and done.emptied == [(3,)] and done.background == [3]
    assert used == [(ann, done)]
    np.testing.assert_array_equal(ann.data[1], seg.data[1])
    assert not ann.data[3].any() and ann.data[0].any() and not ann.data[2].any()
    assert ann.metadata[BACKGROUND_KEY] == [3]
    assert describe_annotation(ann) == "slices 0, 1, 3 (background only: slice 3)"
    assert "slice 3 now empty: marked background only" in done.message(ann.name)

    seg.data[3, 4, 4] = 2  # painted again: no longer background-only
    assert session.use_corrections(seg, ann, [(3,)]).background == []
    assert ann.metadata[BACKGROUND_KEY] == [] and ann.data[3, 4, 4] == 2


def test_corrections_of_a_cine_list_flat_background_indices():
    session = SegmentationSession()
    img = image("cine", shape=(3, 4, 8, 8))
    ann, seg = made_for(img, ANNOTATION), made_for(img, SEGMENTATION)
    session.apply_prediction(seg, prediction((3, 4, 8, 8)), np.zeros((3, 4, 8, 8)))
    seg.data[2, 1] = 0
    done = session.use_corrections(seg, ann)
    assert done.positions == [(2, 1)] and ann.metadata[BACKGROUND_KEY] == [2 * 4 + 1]
    assert done.message("a").startswith("Copied 1 corrected slice(s) (frame 2: slice 1)")


# ------------------------------------------------------------------ next slice
def test_suggest_next_slice_skips_annotated_slices_and_maps_to_world_coordinates():
    session = SegmentationSession()
    img = image("cine", shape=(3, 4, 8, 8))
    seg = made_for(img, SEGMENTATION)
    seg.scale, seg.translate = (0.03, 10.0, 1.5, 1.5), (0.0, 5.0, 0.0, 0.0)
    with pytest.raises(SessionError, match="No prediction yet"):
        session.suggest_next(seg)
    uncertainty = np.zeros((3, 4, 8, 8), np.float16)
    uncertainty[1, 2] = 0.9
    uncertainty[0, 3] = 0.5
    session.apply_prediction(seg, prediction((3, 4, 8, 8)), uncertainty)

    found = session.suggest_next(seg)
    assert found.position == (1, 2) and found.score == pytest.approx(0.9, abs=1e-3)
    assert found.world == pytest.approx((0.03, 25.0))
    assert found.dims_points(5, 4) == [(1, pytest.approx(0.03)), (2, pytest.approx(25.0))]
    assert found.message().startswith("Suggested slice 2 of frame 1: mean uncertainty 0.90")

    ann = made_for(img, ANNOTATION, paint=[(1, 2)])
    assert session.suggest_next(seg, ann).position == (0, 3)
    ann.metadata[BACKGROUND_KEY] = [0 * 4 + 3]  # background-only counts as annotated
    assert session.suggest_next(seg, ann).score == 0.0
    ann.data[...] = 1
    assert session.suggest_next(seg, ann) is None


# ------------------------------------------------------------------ training pairs
def test_training_pairs_own_annotation_other_phase_and_off_grid_images():
    session = SegmentationSession()
    ed, es, other = image("ED"), image("ES"), image("other", shape=(3, 10, 10))
    ann_ed = made_for(ed, ANNOTATION, paint=[(1,)])
    ann_es = made_for(es, ANNOTATION, paint=[(2,)])
    ann_other = made_for(other, ANNOTATION, paint=[(0,)])
    empty = made_for(image("empty"), ANNOTATION)
    only_bg = made_for(image("bg"), ANNOTATION)
    only_bg.metadata[BACKGROUND_KEY] = [0]
    images = [ed, es, other, image("empty"), image("bg")]
    labels = [ann_ed, ann_es, ann_other, empty, only_bg]

    pairs = session.training_pairs(ed, ann_ed, images, labels)
    assert [(i.name, a.name) for i, a in pairs] == [
        ("ED", ann_ed.name),
        ("ES", ann_es.name),
        ("other", ann_other.name),
        ("bg", only_bg.name),
    ]
    assert session.training_pairs(ed, ann_ed, images, labels, all_images=False) == [(ed, ann_ed)]
    # ED's annotation chosen for ES teaches on ED; ES's own annotation is not added twice
    pairs = session.training_pairs(es, ann_ed, images, labels)
    assert [(i.name, a.name) for i, a in pairs][:2] == [
        ("ED", ann_ed.name),
        ("other", ann_other.name),
    ]
    # an annotation whose image is closed teaches on the chosen image
    assert session.training_pairs(es, ann_ed, [es], labels, False) == [(es, ann_ed)]
    # corrections of ES go into ES's annotation layer, never ED's
    assert session.own_annotation(es, ann_ed, images, labels) is ann_es
    assert session.own_annotation(ed, ann_ed, images, labels) is ann_ed
    assert session.own_annotation(None, ann_ed, images, labels) is None
    assert session.training_pairs(None, None, images, [], True) == []


def test_segment_inputs_for_training_and_prediction():
    from napari_pix2rep.jobs import segment_job

    session = SegmentationSession()
    affine = np.diag([1.5, 1.5, 10.0, 1.0]).tolist()
    ed, es = image("ED", affine=affine), image("ES", affine=affine)
    moved = image("moved", affine=(np.diag([1.5, 1.5, 10.0, 1.0]) + np.eye(4, k=3)).tolist())
    other = image("other", shape=(3, 10, 10))
    ann_ed, ann_es = made_for(ed, ANNOTATION, [(1,)]), made_for(es, ANNOTATION, [(2,)])
    ann_es.metadata[BACKGROUND_KEY] = [3]
    pairs = [(ed, ann_ed), (es, ann_es), (moved, made_for(moved, ANNOTATION, [(0,)]))]
    pairs.append((other, made_for(other, ANNOTATION, [(0,)])))
    cfg = {"mode": "linear", "classes": ("background", "LV")}

    settings = SegmentSettings(training=cfg)
    args, kwargs = session.segment_inputs(
        "model.pt", es, pairs + [(es, ann_ed)], settings=settings, device="cpu"
    )
    inspect.signature(segment_job).bind(*args, **kwargs)  # the job takes exactly these
    model, scans, annotations = args
    assert model == "model.pt" and [s.name for s in scans] == ["ED", "ES", "moved", "other"]
    assert scans[1].data is es.data and scans[1].spacing == (10.0, 1.5, 1.5)
    np.testing.assert_array_equal(scans[2].affine, moved.metadata[METADATA_KEY]["affine"])
    assert scans[3].affine is None  # an image without NIfTI geometry: shape and spacing only
    np.testing.assert_array_equal(annotations[1].labels, ann_es.data)  # ES's first, once
    ann_es.data[0] = 1  # painting during training changes nothing the job holds
    assert not annotations[1].labels[0].any()
    assert [a.background for a in annotations] == [set(), {3}, set(), set()]
    assert kwargs["target"] == 1 and kwargs["device"] == "cpu"
    assert kwargs["settings"] is settings

    # predict only: an image without annotation comes last, with none
    predict = SegmentSettings(train=False)
    args, kwargs = session.segment_inputs("seg.pt", ed, pairs[2:], settings=predict, device="auto")
    assert [s.name for s in args[1]] == ["moved", "other", "ED"] and args[2][2] is None
    assert kwargs["target"] == 2 and kwargs["settings"] is predict
    assert args[2][0].labels is not pairs[2][1].data  # a copy: painting meanwhile changes
    np.testing.assert_array_equal(args[2][0].labels, pairs[2][1].data)  # nothing in the job


# ------------------------------------------------------------------ jobs and the segmenter
def test_finish_job_keeps_a_trained_segmenter_and_says_how():
    session = SegmentationSession()
    with pytest.raises(SessionError, match="press Segment first"):
        session.predict_model("")
    assert session.predict_model("backbone.pt") == "backbone.pt"
    with pytest.raises(SessionError, match="No segmenter trained yet"):
        session.save_segmenter("x.pt")
    assert session.segmenter_file_name() == "pix2rep_segmenter.pt"

    saved = []
    segmenter = SimpleNamespace(meta={"mode": "finetune"}, save=lambda p: saved.append(p) or p)
    changed = []
    session.segmenter_changed.connect(changed.append)
    session.start_job(TRAIN, "ED")
    result = SimpleNamespace(segmenter=segmenter, trained=True, how="fine-tuned")
    assert session.finish_job(result) == "fine-tuned"
    assert session.segmenter is segmenter and changed == [segmenter] and session.job is None
    assert session.predict_model("backbone.pt") is segmenter
    assert session.segmenter_file_name() == "ED_segmenter.pt"
    assert session.save_segmenter("a.pt") == "a.pt" and saved == ["a.pt"]

    session.start_job(PREDICT, "ES")
    other = SimpleNamespace(segmenter=object(), trained=False, how="segmenter")
    assert session.finish_job(other) == "current segmenter"
    assert session.segmenter is segmenter and session.segmenter_source == "ED"
    session.start_job(TRAIN, "ES")
    zero = SimpleNamespace(segmenter=object(), trained=False, how="zero clicks, default.pt")
    assert session.finish_job(zero) == "zero clicks, default.pt"  # the model that made them
    assert session.segmenter is segmenter


def test_check_segment_leaves_nothing_painted_to_the_recipe():
    with pytest.raises(SessionError, match="Open a 3D or 4D image"):
        SegmentationSession.check_segment(None, "model.pt")
    with pytest.raises(SessionError, match="No model chosen"):
        SegmentationSession.check_segment(image("ED"), "")
    SegmentationSession.check_segment(image("ED"), "default.pt")  # a zero-click model needs none
