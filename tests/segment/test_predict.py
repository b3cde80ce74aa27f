import copy

import numpy as np
import pytest
import torch

from napari_pix2rep.model.nets.unet import UNet, preset
from napari_pix2rep.model.preprocess import PreprocessConfig
from napari_pix2rep.model.segmenter import Segmenter
from napari_pix2rep.segment.predict import largest_component, predict_volume


@pytest.fixture(scope="module")
def random_segmenter():
    torch.manual_seed(0)
    return Segmenter(UNet(preset("tiny")), preprocess=PreprocessConfig(target_spacing=1.5))


@pytest.mark.parametrize(
    "shape, spacing", [((3, 50, 70), (8.0, 1.2, 1.9)), ((2, 3, 40, 44), (0.1, 8.0, 1.5, 1.5))]
)
def test_prediction_is_on_the_native_grid(random_segmenter, shape, spacing):
    img = np.random.default_rng(0).random(shape).astype(np.float32)
    pred = predict_volume(
        random_segmenter, img, spacing, device="cpu", batch_size=2, cleanup=False
    )
    assert pred.labels.shape == shape and pred.labels.dtype == np.uint8
    assert pred.probabilities.shape == (4, *shape)
    np.testing.assert_allclose(pred.probabilities.astype(np.float32).sum(0), 1, atol=1e-2)
    np.testing.assert_array_equal(pred.labels, pred.probabilities.argmax(0))
    assert pred.uncertainty().shape == shape


def test_prediction_ignores_other_slices(random_segmenter):
    # slices are independent: changing slice 0 leaves slice 1's prediction alone,
    # up to the shared per-volume intensity normalisation
    img = np.random.default_rng(0).random((2, 32, 32)).astype(np.float32)
    a = predict_volume(random_segmenter, img, (5, 1.5, 1.5), device="cpu")
    img2 = img.copy()
    img2[0] = img2[0][::-1]
    b = predict_volume(random_segmenter, img2, (5, 1.5, 1.5), device="cpu")
    np.testing.assert_allclose(
        a.probabilities[:, 1].astype(np.float32),
        b.probabilities[:, 1].astype(np.float32),
        atol=2e-2,
    )


def test_largest_component_per_class_and_frame():
    lab = np.zeros((2, 3, 10, 10), np.uint8)
    lab[:, 1, 1:5, 1:5] = 3
    lab[:, 1, 1:5, 5] = 2  # myocardium touching the blood pool: part of the heart
    lab[:, 1, 8, 8] = 3  # a stray voxel
    lab[0, 2, 0, 9] = 1  # a blob of another class far from the heart
    out = largest_component(lab, 4)
    assert out[:, 1, 8, 8].tolist() == [0, 0]
    assert (out[:, 1, 1:5, 1:5] == 3).all() and (out[:, 1, 1:5, 5] == 2).all()
    assert out[0, 2, 0, 9] == 0
    assert (out[1] == out[0]).all()


def test_clean_up_keeps_the_component_in_the_heart_region_even_when_smaller():
    from napari_pix2rep.segment.localise import HeartRegion

    lab = np.zeros((3, 40, 40), np.uint8)
    lab[:, 5:10, 5:10] = 3  # the heart: small, inside the region
    lab[:, 20:35, 20:35] = 1  # clutter: larger, outside
    region = HeartRegion(0, 15, 0, 15, (7.0, 7.0), "test")
    assert (largest_component(lab, 4) == 1).any()  # without a region, size wins
    kept = largest_component(lab, 4, region)
    assert (kept[:, 5:10, 5:10] == 3).all() and not (kept == 1).any()


def test_a_stray_blob_bigger_than_the_rv_does_not_erase_the_rv():
    """The heart step runs first and the per-class step sees only what is left, so a
    large RV-labelled blob far from the heart cannot take the true RV's place."""
    lab = np.zeros((3, 40, 40), np.uint8)
    lab[:, 10:16, 4:10] = 1  # RV, touching the myocardium
    lab[:, 8:18, 10:12] = 2  # MYO
    lab[:, 10:16, 12:18] = 3  # LV
    lab[:, 28:35, 28:35] = 1  # a stray RV blob: larger than the RV, smaller than the heart
    out = largest_component(lab, 4)
    assert (out[:, 10:16, 4:10] == 1).all()
    assert not out[:, 28:35, 28:35].any()
    assert (out[:, 10:16, 12:18] == 3).all()


def test_prediction_on_a_region_is_background_outside_and_matches_inside(random_segmenter):
    from napari_pix2rep.segment.localise import HeartRegion

    img = np.random.default_rng(1).random((3, 64, 64)).astype(np.float32)
    region = HeartRegion(8, 56, 4, 60, (32.0, 32.0), "test")
    pred = predict_volume(
        random_segmenter, img, (8.0, 1.5, 1.5), device="cpu", cleanup=False, region=region
    )
    outside = ~region.mask(img.shape)
    assert (pred.labels[outside] == 0).all()
    np.testing.assert_array_equal(pred.probabilities[0][outside], 1.0)
    np.testing.assert_allclose(pred.probabilities.astype(np.float32).sum(0), 1, atol=1e-2)
    np.testing.assert_array_equal(pred.labels, pred.probabilities.argmax(0))


def test_flip_average_is_the_mean_of_the_image_and_its_mirror(random_segmenter):
    # 32 x 32 at the model spacing: no resampling and no padding, so mirroring the image
    # mirrors exactly what the network sees; a sharpened head, so the mirror differs
    random_segmenter = copy.deepcopy(random_segmenter)
    with torch.no_grad():
        random_segmenter.head.conv.weight.mul_(30.0)
    img = np.random.default_rng(1).random((2, 32, 32)).astype(np.float32)
    spacing = (5.0, 1.5, 1.5)
    plain = predict_volume(random_segmenter, img, spacing, "cpu", cleanup=False)
    mirror = predict_volume(
        random_segmenter, np.ascontiguousarray(img[..., ::-1]), spacing, "cpu", cleanup=False
    )
    both = predict_volume(random_segmenter, img, spacing, "cpu", cleanup=False, flip_average=True)
    expected = 0.5 * (
        plain.probabilities.astype(np.float32) + mirror.probabilities[..., ::-1].astype(np.float32)
    )
    np.testing.assert_allclose(both.probabilities.astype(np.float32), expected, atol=2e-3)
    assert np.abs(both.probabilities - plain.probabilities).max() > 1e-2  # it did something
    # the symmetric result: mirroring the input mirrors the output
    both_m = predict_volume(
        random_segmenter,
        np.ascontiguousarray(img[..., ::-1]),
        spacing,
        "cpu",
        cleanup=False,
        flip_average=True,
    )
    np.testing.assert_allclose(
        both_m.probabilities[..., ::-1].astype(np.float32),
        both.probabilities.astype(np.float32),
        atol=2e-3,
    )


def test_flip_average_defaults_to_what_the_model_file_asks(random_segmenter):
    img = np.random.default_rng(2).random((1, 32, 32)).astype(np.float32)
    spacing = (5.0, 1.5, 1.5)
    on = predict_volume(random_segmenter, img, spacing, "cpu", cleanup=False, flip_average=True)
    off = predict_volume(random_segmenter, img, spacing, "cpu", cleanup=False)
    random_segmenter.meta["flip_average"] = True
    try:
        asked = predict_volume(random_segmenter, img, spacing, "cpu", cleanup=False)
        overridden = predict_volume(
            random_segmenter, img, spacing, "cpu", cleanup=False, flip_average=False
        )
    finally:
        del random_segmenter.meta["flip_average"]
    np.testing.assert_array_equal(asked.probabilities, on.probabilities)
    np.testing.assert_array_equal(overridden.probabilities, off.probabilities)
