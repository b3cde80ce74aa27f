import numpy as np

from napari_pix2rep.annotations import collect_annotations
from napari_pix2rep.classes import IGNORE
from napari_pix2rep.metrics import dice_per_class
from napari_pix2rep.propagate import propagate_slices


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
    out = propagate_slices(ed, es, painted, [1], n_classes=4)
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
