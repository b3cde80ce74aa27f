import numpy as np
import pytest

from napari_pix2rep.evaluation.phantom import make_phantom
from napari_pix2rep.segment.localise import (
    HeartRegion,
    locate_heart,
    motion_map,
    region_from_annotation,
    region_from_motion,
)


@pytest.fixture(scope="module")
def cine():
    return make_phantom(n_slices=6, size=(128, 128), n_frames=8, seed=5)


def _centroid(mask: np.ndarray) -> np.ndarray:
    return np.argwhere(mask)[:, -2:].mean(0)


def test_motion_finds_the_beating_heart(cine):
    heart = cine.labels > 0
    region = region_from_motion(cine.image, cine.spacing[-2:])
    assert region.source == "motion"
    # (almost) all the heart of every frame is inside, in a box smaller than the view
    inside = region.mask(heart.shape)
    assert (heart & inside).sum() >= 0.99 * heart.sum()
    assert region.area_fraction(heart.shape) < 0.9
    # the peak sits on a ventricle (the chambers change volume, nothing else moves)
    dist = min(
        np.hypot(*((np.array(region.centre) - _centroid(cine.labels == c)) * cine.spacing[-2:]))
        for c in (1, 3)
    )
    assert dist < 20.0  # mm


def test_static_image_has_no_motion(cine):
    still = np.repeat(cine.image[:1], 3, axis=0)
    assert motion_map(still, (1.5, 1.5)).max() == pytest.approx(0.0, abs=1e-6)
    # nothing moves: nothing is localised (the whole view is segmented), no crash
    assert region_from_motion(still, (1.5, 1.5)) is None
    assert locate_heart(cine.image[0], cine.spacing[1:], other_frames=[cine.image[0]]) is None
    with pytest.raises(ValueError, match="two 3D frames"):
        motion_map(cine.image[:1], (1.5, 1.5))


def test_annotation_box_holds_the_paint_with_a_margin():
    lab = np.zeros((4, 100, 120), np.uint8)
    lab[2, 40:50, 60:80] = 3
    r = region_from_annotation(lab, (2.0, 1.0), margin_mm=10.0, min_half_mm=0.0)
    assert (r.y0, r.y1, r.x0, r.x1) == (35, 55, 50, 90)
    assert r.centre == (44.5, 69.5) and r.source == "annotation"
    assert region_from_annotation(np.zeros_like(lab), (1.0, 1.0)) is None
    # a box is never smaller than the minimum size, and is clipped to the grid
    small = region_from_annotation(lab, (1.0, 1.0), margin_mm=0.0, min_half_mm=50.0)
    assert (small.y0, small.y1, small.x0, small.x1) == (0, 96, 19, 120)


def test_locate_prefers_paint_then_motion_then_nothing(cine):
    ed = cine.image[cine.ed_frame]
    es = cine.image[cine.es_frame]
    lab = np.zeros(ed.shape, np.uint8)
    lab[3] = cine.labels[cine.ed_frame, 3]
    assert locate_heart(ed, cine.spacing[1:], annotation=lab).source == "annotation"
    assert locate_heart(ed, cine.spacing[1:], annotation=np.zeros_like(lab)) is None
    assert locate_heart(ed, cine.spacing[1:], other_frames=[es]).source == "motion"
    assert locate_heart(cine.image, cine.spacing).source == "motion"
    # a frame of another shape is not motion
    assert locate_heart(ed, cine.spacing[1:], other_frames=[es[:, :64]]) is None


def test_region_mask_broadcasts_over_leading_axes():
    r = HeartRegion(1, 3, 2, 5, (2.0, 3.5), "test")
    m = r.mask((2, 3, 4, 6))
    assert m.shape == (2, 3, 4, 6) and m[1, 2].sum() == 6 and m[0, 0, 1, 2] and not m[0, 0, 0, 2]
