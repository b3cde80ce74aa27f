"""The dock's annotation-loop rules (napari_pix2rep.loop) and segment_job using them:
heart region, painted slices carried to another phase or frame, background-only slices."""

from __future__ import annotations

import numpy as np
import pytest

from napari_pix2rep.jobs import segment_job
from napari_pix2rep.localise import locate_heart
from napari_pix2rep.loop import (
    annotation_summary,
    background_of,
    carry_plan,
    cine_carry_plan,
    corrected_background,
    fusion_sources,
    heart_paint,
    most_different_frame,
    on_same_grid,
    painted_slices,
)
from napari_pix2rep.phantom import make_phantom


def drive(gen, stop_when=None):
    """Run a job to its end: ``(progress list, result)``; ``stop_when(p)`` raises cancel."""
    seen, flag = [], {"stop": False}
    if stop_when is not None:
        gen = gen(lambda: flag["stop"])
    while True:
        try:
            p = next(gen)
        except StopIteration as s:
            return seen, s.value
        seen.append(p)
        if stop_when is not None and stop_when(p):
            flag["stop"] = True


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    """An untrained ``tiny`` backbone file (job mechanics only)."""
    import torch

    from napari_pix2rep.checkpoint import BACKBONE, atomic_torch_save
    from napari_pix2rep.nets.unet import UNet, preset
    from napari_pix2rep.segmenter import Segmenter

    root = tmp_path_factory.mktemp("loop")
    obj = torch.load(Segmenter(UNet(preset("tiny"))).save(root / "s.pt"), weights_only=True)
    obj = {k: v for k, v in obj.items() if k not in ("classes", "head")}
    return atomic_torch_save({**obj, "format": BACKBONE}, root / "bb.pt")


# --------------------------------------------------------------------------- plain rules


def test_corrections_mark_emptied_slices_background_only():
    seg = np.zeros((2, 3, 8, 8), np.uint8)
    seg[0, 1, 2:4, 2:4] = 3  # a corrected slice that holds labels
    # frame 1, slice 2 emptied by the user; (0, 1) painted: its old mark goes
    out = corrected_background(seg, [(0, 1), (1, 2)], {1, 4})
    assert out == {4, 1 * 3 + 2}
    assert corrected_background(seg[0], [(1,), (2,)], set()) == {2}


def test_annotation_summary_lists_background_only_slices():
    lab = np.zeros((5, 8, 8), np.uint8)
    lab[1, 2, 2] = 1
    # 1 is listed but painted: it counts as painted
    assert annotation_summary(lab, {1, 4}) == ([(1,), (4,)], [(4,)])
    assert background_of({"pix2rep_background_slices": [4, 9, -1]}, 5) == {4}
    assert background_of(None, 5) == set()


def test_carry_plan_skips_what_the_target_annotated():
    ed = np.zeros((6, 8, 8), np.uint8)
    ed[[1, 3, 4], 2, 2] = 2
    es = np.zeros_like(ed)
    es[3, 1, 1] = 1
    other = np.zeros_like(ed)
    other[[1, 5], 1, 1] = 1
    assert painted_slices(ed) == [1, 3, 4]
    # 3 painted in ES itself, 4 background-only there; 1 taken from the first source
    assert carry_plan(es, {4}, [ed, other]) == [(0, [1]), (1, [5])]
    assert carry_plan(None, set(), [np.zeros_like(ed)]) == []


def test_cine_carry_goes_to_the_most_different_frame():
    cine = make_phantom(n_slices=3, size=(48, 48), n_frames=6, seed=1)
    assert most_different_frame(cine.image, 0) == cine.es_frame
    lab = np.zeros(cine.image.shape, np.uint8)
    assert cine_carry_plan(cine.image, lab) is None
    lab[0, [0, 2]] = cine.labels[0, [0, 2]]
    lab[4, 1] = cine.labels[4, 1]
    g = cine.es_frame
    assert cine_carry_plan(cine.image, lab) == (0, g, [0, 2])
    # slice 2 of frame g is background-only there: not carried
    assert cine_carry_plan(cine.image, lab, {g * 3 + 2}) == (0, g, [0])
    assert cine_carry_plan(cine.image[:1], lab[:1]) is None


def test_fusion_sources_are_other_painted_phases_of_a_3d_target():
    ed, es = np.zeros((3, 8, 8), np.float32), np.ones((3, 8, 8), np.float32)
    painted, empty = np.zeros((3, 8, 8), np.uint8), np.zeros((3, 8, 8), np.uint8)
    painted[1, 2, 2] = 3
    pairs = [(ed, (10, 1, 1), painted), (es.copy(), (10, 1, 1), painted), (ed, (10, 1, 1), empty)]
    target = (es, (10, 1, 1))
    assert fusion_sources(pairs, target, [0, 1, 2]) == [0]  # not ES itself, not unpainted
    assert fusion_sources(pairs, (es[None], (1, 10, 1, 1)), [0]) == []  # a cine: never


def test_grid_and_paint_rules():
    a = np.eye(4)
    b = a.copy()
    b[0, 3] = 5.0
    assert on_same_grid((2, 8, 8), (10, 1.5, 1.5), a, (2, 8, 8), (10, 1.5, 1.5), None)
    assert not on_same_grid((2, 8, 8), (10, 1.5, 1.5), a, (2, 8, 8), (10, 1.5, 1.5), b)
    assert not on_same_grid((2, 8, 8), (10, 1.5, 1.5), a, (2, 8, 9), (10, 1.5, 1.5), a)
    own = np.zeros((2, 8, 8), np.uint8)
    other = own.copy()
    other[1, 3, 4] = 1
    assert heart_paint(own, [other]).shape == (8, 8) and heart_paint(own, [other])[3, 4]
    own[0, 1, 1] = 2
    assert heart_paint(own, [other]).shape == (2, 8, 8)
    assert heart_paint(None, [np.zeros_like(own)]) is None


# --------------------------------------------------------------------------- segment_job


def _outside_is_background(pred, region):
    outside = ~region.mask(pred.labels.shape)
    return bool(np.all(pred.probabilities[0][outside] == 1.0)) and not pred.labels[outside].any()


def test_segment_job_predicts_on_the_painted_heart_and_carries_to_es(backbone):
    ph = make_phantom(n_slices=4, size=(96, 96), n_frames=6, seed=3)
    ed, es = ph.image[0], ph.image[ph.es_frame]
    spacing = ph.spacing[1:]
    labels = np.zeros(ed.shape, np.uint8)
    labels[[1, 2]] = ph.labels[0, [1, 2]]
    region = locate_heart(ed, spacing, annotation=labels)
    assert region.area_fraction(ed.shape) < 0.6

    def job(stop):
        return segment_job(
            str(backbone),
            [(ed, spacing, labels)],
            (es, spacing),
            config={"probe_steps": 3},
            device="cpu",
            names=["ED"],
            background=[{3}],
            should_stop=stop,
        )

    seen, result = drive(job(lambda: False))
    carry = [p for p in seen if p.stage == "carry"]
    assert carry[0].message == "Carrying 2 painted slices to this image" and carry[0].total == 2
    # trained on ED's two slices, its background-only slice 3, and the two carried to ES
    used = sorted(map(tuple, result.segmenter.meta["annotated_slices"]))
    assert used == [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2)]
    assert _outside_is_background(result.prediction, region)
    # ES's prediction is fused with ED's (by a probe of ED's own paint), carried onto ES
    assert sum(p.stage == "features" and p.step == 0 for p in seen) == 2
    stages = [p.stage for p in seen]
    assert stages.index("fuse") > stages.index("predict")
    assert any(p.message == "Segmenting the other phase" for p in seen)
    fuse = [p for p in seen if p.stage == "fuse"]
    assert fuse[-1].step == fuse[-1].total == es.shape[0]
    steps, alone = drive(
        segment_job(result.segmenter, [], (es, spacing), device="cpu", train=False)
    )
    assert not any(p.stage == "fuse" for p in steps)  # predict only: no fusion
    assert not np.array_equal(alone.prediction.probabilities, result.prediction.probabilities)

    # no localisation: the whole field of view is segmented
    _, whole = drive(
        segment_job(result.segmenter, [], (es, spacing), device="cpu", train=False, localise=False)
    )
    assert not np.all(whole.prediction.probabilities[0][~region.mask(es.shape)] == 1.0)

    # a cancel while carrying, or while fusing, changes nothing
    seen, cancelled = drive(job, stop_when=lambda p: p.stage == "carry")
    assert cancelled.cancelled and cancelled.prediction is None
    assert [p.stage for p in seen] == ["carry"]
    seen, cancelled = drive(job, stop_when=lambda p: p.stage == "fuse")
    assert cancelled.cancelled and cancelled.prediction is None and seen[-1].stage == "fuse"


def test_segment_job_cine_carries_to_the_es_frame_and_uses_motion(backbone):
    ph = make_phantom(n_slices=3, size=(96, 96), n_frames=6, spacing=(10.0, 3.0, 3.0), seed=4)
    labels = np.zeros(ph.image.shape, np.uint8)
    labels[0, 1] = ph.labels[0, 1]
    seen, result = drive(
        segment_job(
            str(backbone),
            [(ph.image, ph.spacing, labels)],
            (ph.image, ph.spacing),
            config={"probe_steps": 3},
            device="cpu",
            own=0,
        )
    )
    g = most_different_frame(ph.image, 0)
    assert any(p.message == f"Carrying 1 painted slice to frame {g}" for p in seen)
    assert not any(p.stage == "fuse" for p in seen)  # a cine is not fused
    used = sorted(map(tuple, result.segmenter.meta["annotated_slices"]))
    assert used == [(0, 1), (1, 1)]  # frame 0 slice 1 (flat 1), and slice 1 carried
    region = locate_heart(ph.image, ph.spacing, annotation=labels)
    assert _outside_is_background(result.prediction, region)

    # a cine without paint (predict only): the region comes from the motion
    _, again = drive(
        segment_job(result.segmenter, [], (ph.image, ph.spacing), device="cpu", train=False)
    )
    motion = locate_heart(ph.image, ph.spacing)
    assert motion.source == "motion" and motion.area_fraction(ph.image.shape) < 0.8
    assert _outside_is_background(again.prediction, motion)
