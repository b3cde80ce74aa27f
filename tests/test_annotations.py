import numpy as np
import pytest

from napari_pix2rep.annotations import (
    IGNORE,
    AnnotationError,
    annotated_slice_summary,
    collect_annotations,
)


def _pair(shape=(4, 8, 8)):
    image = np.random.default_rng(0).random(shape).astype(np.float32)
    labels = np.zeros(shape, np.uint8)
    return image, labels


def test_full_mode_takes_slices_with_any_label_and_zero_is_background():
    image, labels = _pair()
    labels[1, 2:4, 2:4] = 3
    labels[3, 0, 0] = 1
    out = collect_annotations([(image, labels)])
    assert [a.index for a in out] == [1, 3]
    assert (out[0].target == 0).sum() == 64 - 4  # background where unpainted
    assert annotated_slice_summary(labels) == [(1,), (3,)]


def test_4d_slices_are_indexed_by_frame_and_slice():
    image, labels = _pair((3, 2, 8, 8))
    labels[2, 1, 4, 4] = 2
    out = collect_annotations([(image, labels)])
    assert [a.index for a in out] == [2 * 2 + 1]
    assert annotated_slice_summary(labels) == [(2, 1)]


def test_sparse_mode_ignores_unpainted_pixels():
    image, labels = _pair()
    labels[0, :2, :] = 4  # background scribble
    labels[0, 5, 5] = 3
    out = collect_annotations([(image, labels)], mode="sparse", background_value=4)
    t = out[0].target
    assert (t[:2] == 0).all() and t[5, 5] == 3 and (t[2:5] == IGNORE).all()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda im, lab: (im, lab[:, :4]), "not on the image grid"),
        (lambda im, lab: (im, np.where(lab > 0, 7, lab)), r"label values \[7\]"),
        (lambda im, lab: (im, np.zeros_like(lab)), "No annotated slice"),
        (lambda im, lab: (im[0], lab[0]), "3D or 4D"),
    ],
)
def test_bad_annotations_get_one_clear_sentence(mutate, message):
    image, labels = _pair()
    labels[1, 3, 3] = 3
    image, labels = mutate(image, labels)
    with pytest.raises(AnnotationError, match=message):
        collect_annotations([(image, labels)])


def test_only_background_is_an_error():
    image, labels = _pair()
    labels[1] = 4
    with pytest.raises(AnnotationError, match="Only background"):
        collect_annotations([(image, labels)], mode="sparse", background_value=4)


def test_fractional_labels_are_refused():
    image, _ = _pair()
    labels = np.zeros(image.shape, np.float32)
    labels[0, 0, 0] = 1.5
    with pytest.raises(AnnotationError, match="whole numbers"):
        collect_annotations([(image, labels)])
