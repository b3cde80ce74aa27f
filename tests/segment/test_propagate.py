import numpy as np

from napari_pix2rep.annotate.annotations import collect_annotations
from napari_pix2rep.core.classes import IGNORE
from napari_pix2rep.core.progress import run_to_end
from napari_pix2rep.measure.metrics import dice_per_class
from napari_pix2rep.segment.propagate import (
    carry_probabilities_iter,
    carry_slices_iter,
    fuse_probabilities,
)


def _heart(radius: float, shape=(3, 80, 80), centre=(40.0, 40.0)):
    """A bright cavity (LV, 3) inside a grey 6-pixel wall (MYO, 2): image and labels."""
    yy, xx = np.mgrid[: shape[1], : shape[2]]
    r = np.hypot(yy - centre[0], xx - centre[1])
    lab = np.zeros(shape, np.int64)
    lab[:, r < radius + 6] = 2
    lab[:, r < radius] = 3
    img = np.choose(lab, [0.1, 0.0, 0.5, 1.0]).astype(np.float32)
    img += np.random.default_rng(0).normal(0, 0.02, shape).astype(np.float32)
    return img, lab


def test_propagated_labels_follow_the_contraction():
    ed, ed_lab = _heart(18.0)
    es, es_lab = _heart(12.0, centre=(42.0, 39.0))
    painted = np.zeros_like(ed_lab)
    painted[1] = ed_lab[1]
    seen = []
    out = run_to_end(carry_slices_iter(ed, es, painted, [1], n_classes=4), seen.append)
    assert [(p.stage, p.step, p.total) for p in seen] == [("carry", 0, 1)]
    assert (out[0] == 0).all() and (out[2] == 0).all()  # only the painted slice is carried
    carried = out[1]
    sure = carried != IGNORE
    assert 0.9 < sure.mean() < 1.0  # the boundaries are left out
    before = dice_per_class(painted[1], es_lab[1], (2, 3))
    after = dice_per_class(np.where(sure, carried, 0), es_lab[1], (2, 3))
    assert after[3] > 0.9 and after[3] > before[3] + 0.2
    assert after[2] > before[2]
    # where it is sure, it is right
    assert (carried[sure] == es_lab[1][sure]).mean() > 0.97
    # and it trains like any annotation (IGNORE pixels teach nothing)
    ann = collect_annotations([(es, out)], n_classes=4)
    assert [a.index for a in ann] == [1] and (ann[0].target == IGNORE).any()


def test_fuse_probabilities_averages_with_the_carried_phase():
    own = np.zeros((2, 1, 1, 2), np.float32)
    own[:, 0, 0] = [[1.0, 0.2], [0.0, 0.8]]  # pixel 0 background, pixel 1 class 1
    other = np.zeros_like(own)
    other[:, 0, 0] = [[0.0, 0.6], [1.0, 0.4]]
    fused = fuse_probabilities(own, [other], weight=0.25)
    assert fused.dtype == np.float16
    np.testing.assert_allclose(fused[:, 0, 0], [[0.75, 0.3], [0.25, 0.7]], atol=1e-3)
    np.testing.assert_allclose(fuse_probabilities(own, [other, other], 0.25), fused, atol=1e-3)
    assert fuse_probabilities(own, []) is own  # nothing carried: the phase's own


def _one_hot(lab: np.ndarray, k: int = 4) -> np.ndarray:
    return np.moveaxis(np.eye(k, dtype=np.float32)[lab], -1, 0)  # (K, z, y, x)


def test_carried_probabilities_follow_the_heart_and_skip_empty_slices():
    ed, ed_lab = _heart(18.0)
    es, es_lab = _heart(12.0, centre=(42.0, 39.0))
    probs = _one_hot(ed_lab)
    probs[:, 2] = _one_hot(np.zeros_like(ed_lab[2]))  # no heart predicted in slice 2
    steps = []
    gen = carry_probabilities_iter(probs, ed, es)
    while True:
        try:
            steps.append(next(gen))
        except StopIteration as done:
            carried = done.value
            break
    assert steps[-1].stage == "fuse" and steps[-1].step == steps[-1].total == 3
    assert carried.shape == probs.shape and carried.dtype == np.float32
    np.testing.assert_allclose(carried.sum(0), 1.0, atol=1e-4)  # still probabilities
    labels = carried.argmax(0)
    before = dice_per_class(ed_lab[1], es_lab[1], (2, 3))
    after = dice_per_class(labels[1], es_lab[1], (2, 3))
    assert after[3] > 0.9 and after[3] > before[3] + 0.2
    np.testing.assert_array_equal(carried[:, 2], probs[:, 2])  # empty: left as it was


def test_carrying_probabilities_stops_between_slices():
    ed, ed_lab = _heart(18.0)
    gen = carry_probabilities_iter(_one_hot(ed_lab), ed, ed, should_stop=lambda: True)
    next(gen)
    try:
        next(gen)
    except StopIteration as done:
        assert done.value is None
