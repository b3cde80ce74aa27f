import numpy as np
import pytest

from napari_pix2rep.annotate.annotations import (
    AnnotationError,
    annotated_slice_summary,
    collect_annotations,
)
from napari_pix2rep.core.classes import IGNORE


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


def test_background_only_slices_are_annotated_and_teach_background():
    from napari_pix2rep.annotate.annotations import slice_targets

    lab = np.zeros((4, 6, 6), np.uint8)
    lab[1, 2:4, 2:4] = 3
    assert [i for i, _ in slice_targets(lab, 4)] == [1]
    found = slice_targets(lab, 4, background_slices={0, 3})
    assert [i for i, _ in found] == [0, 1, 3]
    assert not found[0][1].any() and not found[2][1].any()
    with pytest.raises(AnnotationError, match="outside"):
        slice_targets(lab, 4, background_slices={4})
    with pytest.raises(AnnotationError, match="scribbles"):
        slice_targets(lab, 4, mode="sparse", background_value=5, background_slices={0})
    # background-only slices alone do not make a training set
    with pytest.raises(AnnotationError, match="Only background"):
        collect_annotations([(lab, np.zeros_like(lab))], background_slices=[{0, 1}])
    ann = collect_annotations([(lab, lab)], background_slices=[{3}])
    assert [a.index for a in ann] == [1, 3]


def test_summary_lists_background_only_slices():
    lab = np.zeros((2, 3, 4, 4), np.uint8)
    lab[0, 1, 0, 0] = 2
    assert annotated_slice_summary(lab) == [(0, 1)]
    assert annotated_slice_summary(lab, {5}) == [(0, 1), (1, 2)]


def test_sidecar_round_trip_and_refusals(tmp_path):
    from napari_pix2rep.annotate.annotations import (
        read_background_slices,
        sidecar_path,
        write_background_slices,
    )

    labels = tmp_path / "case_gt.nii.gz"
    assert sidecar_path(labels).name == "case_gt.slices.json"
    assert sidecar_path(tmp_path / "x.nii").name == "x.slices.json"
    shape = (2, 5, 8, 8)
    assert read_background_slices(labels, shape) == set()  # no sidecar: none
    path = write_background_slices(labels, {1, 9}, shape)
    assert '"background_only": [\n  [\n   0,\n   1\n  ],' in path.read_text()
    assert read_background_slices(labels, shape) == {1, 9}
    with pytest.raises(AnnotationError, match="written for a grid"):
        read_background_slices(labels, (5, 8, 8))
    path.write_text("{not json")
    with pytest.raises(AnnotationError, match="not a readable"):
        read_background_slices(labels, shape)
    path.write_text('{"format": "other"}')
    with pytest.raises(AnnotationError, match="is not a napari-pix2rep"):
        read_background_slices(labels, shape)
    write_background_slices(labels, set(), shape)
    assert not path.exists() and not list(tmp_path.iterdir())


def test_a_failed_sidecar_write_keeps_the_previous_sidecar_and_leaves_no_temp(
    tmp_path, monkeypatch
):
    from napari_pix2rep.annotate.annotations import read_background_slices, sidecar_path
    from napari_pix2rep.annotate.annotations import write_background_slices as write
    from napari_pix2rep.io.outputs import OutputError

    labels, shape = tmp_path / "case_gt.nii.gz", (4, 8, 8)
    write(labels, {1}, shape)
    before = sidecar_path(labels).read_bytes()

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.fsync", full_disk)  # written, then the disk is full
    with pytest.raises(OutputError, match="the disk is full; the previous case_gt.slices.json"):
        write(labels, {2}, shape)
    monkeypatch.undo()
    assert sidecar_path(labels).read_bytes() == before
    assert read_background_slices(labels, shape) == {1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case_gt.slices.json"]
