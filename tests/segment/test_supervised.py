"""Supervised training of the default model (segment/supervised.py) on phantom cases:
the schedule, checkpoint and resume (the same trajectory as an uninterrupted run), the
shipped file (zero-click, fp16, loads with weights_only), and that it learns."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_pix2rep.core.classes import DEFAULT_CLASSES
from napari_pix2rep.evaluation.phantom import write_phantom_dataset
from napari_pix2rep.io.acdc import list_cases, split_validation
from napari_pix2rep.model.checkpoint import atomic_torch_save
from napari_pix2rep.model.preprocess import prepare_volume
from napari_pix2rep.model.segmenter import Segmenter, load_backbone
from napari_pix2rep.segment.supervised import (
    SupervisedConfig,
    SupervisedRun,
    lr_at,
    pack_cases,
    prior_offsets,
    shipped_segmenter,
    train_iter,
    with_context,
)

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    root = tmp_path_factory.mktemp("acdc_like")
    write_phantom_dataset(root, n_cases=5, n_slices=4, size=(48, 48), n_frames=4)
    return split_validation(list_cases(root))


def _run(tiny_backbone_file, steps: int, **kw) -> SupervisedRun:
    backbone, pre, _ = load_backbone(tiny_backbone_file)
    torch.manual_seed(0)
    cfg = SupervisedConfig(steps=steps, batch_size=2, crop=32, warmup=2, **kw)
    return SupervisedRun(Segmenter(backbone, DEFAULT_CLASSES, pre), cfg, CPU)


def test_learning_rate_warms_up_then_decays_to_the_floor():
    cfg = SupervisedConfig(steps=100, warmup=10, lr=1e-3, final_lr_fraction=0.1)
    assert lr_at(0, cfg) == pytest.approx(1e-4)
    assert lr_at(9, cfg) == pytest.approx(1e-3)
    assert lr_at(55, cfg) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 2))))
    assert lr_at(100, cfg) == pytest.approx(1e-4)


def test_packed_slices_are_every_labelled_slice_on_the_model_grid(cases, tiny_backbone_file):
    pool, _ = cases
    run = _run(tiny_backbone_file, 1)
    data = pack_cases(pool[:1], run.segmenter)
    assert len(data) == 2 * 4  # ED and ES, 4 slices each
    assert all(s.x.dtype == torch.float16 and s.x.shape[1:] == s.t.shape for s in data)
    assert set(torch.cat([s.t.flatten() for s in data]).tolist()) <= {0, 1, 2, 3}


def test_a_resumed_run_follows_the_uninterrupted_one(cases, tiny_backbone_file, tmp_path):
    pool, _ = cases
    whole = _run(tiny_backbone_file, 6, checkpoint_every=3)
    data = pack_cases(pool[:2], whole.segmenter)
    for _ in train_iter(whole, data, [], tmp_path / "whole.pt"):
        pass
    part = _run(tiny_backbone_file, 6, checkpoint_every=3)
    state = tmp_path / "part.pt"
    steps = train_iter(part, data, [], state, should_stop=lambda: part.step >= 3)
    for _ in steps:
        pass
    assert part.step == 3 and state.is_file()
    resumed = SupervisedRun.load(state, CPU)
    for _ in train_iter(resumed, data, [], state):
        pass
    assert resumed.step == 6
    a, b = whole.segmenter.state_dict(), resumed.segmenter.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)


def test_training_learns_and_ships_a_zero_click_segmenter(cases, tiny_backbone_file, tmp_path):
    pool, _ = cases
    run = _run(tiny_backbone_file, 60, validate_every=30, lr=3e-3)
    run.cfg = SupervisedConfig.from_dict({**run.cfg.to_dict(), "batch_size": 4, "crop": 48})
    data = pack_cases(pool[:2], run.segmenter)
    logs = list(train_iter(run, data, pool[:1], tmp_path / "state.pt"))  # fits what it saw
    first = np.mean([p.loss for p in logs[:5]])
    last = np.mean([p.loss for p in logs[-5:]])
    assert last < 0.8 * first
    assert [e["step"] for e in run.log if "validation" in e] == [30, 60]
    assert run.best is not None and run.best["dice"]["mean"] > 0.4
    path = atomic_torch_save(shipped_segmenter(run), tmp_path / "shipped.pt")
    obj = torch.load(path, weights_only=True)
    weights = [v for v in obj["state_dict"].values() if v.is_floating_point()]
    assert all(v.dtype == torch.float16 for v in weights)
    seg = Segmenter.from_file(path)
    assert seg.zero_click and seg.meta["steps"] == run.best["step"]
    prefix = "backbone."
    best = {k[len(prefix) :]: v for k, v in run.best["state_dict"].items() if prefix in k}
    loaded = seg.backbone.state_dict()
    for k, v in best.items():
        expected = v.float() if v.is_floating_point() else v
        torch.testing.assert_close(loaded[k], expected, atol=2e-3, rtol=2e-3, msg=k)


def test_prior_offsets_undo_the_class_weights():
    w = torch.tensor([0.5, 2.0, 1.0])
    torch.testing.assert_close(prior_offsets(w, 1.0), torch.tensor([math.log(2), -math.log(2), 0]))
    torch.testing.assert_close(prior_offsets(w, 0.5), 0.5 * prior_offsets(w, 1.0))
    # weighted scores w_k p_k, corrected, give back the unweighted posterior's softmax
    p = torch.tensor([0.7, 0.1, 0.2])
    corrected = (torch.log(w * p) + prior_offsets(w, 1.0)).softmax(0)
    torch.testing.assert_close(corrected, p)


def test_the_shipped_head_carries_the_prior_correction_and_flip_request(
    tiny_backbone_file, tmp_path
):
    run = _run(tiny_backbone_file, 1)
    weights = torch.tensor([0.2, 1.5, 1.2, 1.1])
    plain = Segmenter.from_dict(shipped_segmenter(run, flip_average=False))
    obj = shipped_segmenter(run, class_weights=weights, prior_correction=0.75)
    seg = Segmenter.from_file(atomic_torch_save(obj, tmp_path / "corrected.pt"))
    assert seg.flip_average and not plain.flip_average
    torch.testing.assert_close(
        seg.head.conv.bias, plain.head.conv.bias - 0.75 * torch.log(weights)
    )
    torch.testing.assert_close(seg.head.conv.weight, plain.head.conv.weight)
    assert seg.meta["prior_correction"]["scale"] == 0.75
    assert plain.meta["prior_correction"] is None


def test_a_segmenter_with_context_starts_as_the_one_slice_segmenter(tiny_backbone_file, cases):
    run = _run(tiny_backbone_file, 1)
    seg = run.segmenter.eval()
    wide = with_context(seg, 1).eval()
    assert wide.preprocess.channels == 3 and wide.backbone.config.in_channels == 3
    data = np.random.default_rng(0).random((4, 32, 32)).astype(np.float32)
    one = prepare_volume(data, (5.0, 1.5, 1.5), seg.preprocess, 8).x
    three = prepare_volume(data, (5.0, 1.5, 1.5), wide.preprocess, 8).x
    with torch.no_grad():
        torch.testing.assert_close(wide(three), seg(one), atol=1e-5, rtol=1e-5)
    # it trains (neighbour order reversed at random) and its file round-trips
    pool, _ = cases
    wide_run = SupervisedRun(wide, SupervisedConfig(steps=2, batch_size=2, crop=32), CPU)
    packed = pack_cases(pool[:1], wide)
    assert packed[0].x.shape[0] == 3
    wide_run.train_step(packed, torch.ones(4))
    again = Segmenter.from_dict(shipped_segmenter(wide_run))
    assert again.preprocess.context == 1
    with pytest.raises(ValueError, match="already"):
        with_context(wide, 1)
