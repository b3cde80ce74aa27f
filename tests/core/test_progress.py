"""One progress protocol: the Progress generators, stopping between steps, durations."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from napari_pix2rep.core.progress import (
    Progress,
    format_duration,
    never,
    run_to_end,
    until_stopped,
)


def counting(n: int, closed: list):
    """Yields ``n`` steps and returns ``"done"``; notes in ``closed`` where it ended."""
    step = 0
    try:
        for step in range(1, n + 1):
            yield Progress("count", step, n)
        return "done"
    finally:
        closed.append(step)


def test_format_duration_known_answers():
    assert format_duration(None) == "?"
    assert format_duration(-3) == "0:00"
    assert format_duration(59.6) == "1:00"
    assert format_duration(61) == "1:01"
    assert format_duration(3600) == "1:00:00"
    assert format_duration(3 * 3600 + 5 * 60 + 9.4) == "3:05:09"


def test_run_to_end_returns_the_value_and_reports_each_step():
    seen, closed = [], []
    assert run_to_end(counting(3, closed), seen.append) == "done"
    assert [p.step for p in seen] == [1, 2, 3] and closed == [3]


def test_until_stopped_closes_the_operation_at_a_step_boundary():
    closed, seen = [], []
    flag = {"stop": False}

    def stop():
        return flag["stop"]

    gen = until_stopped(counting(10, closed), stop)
    for p in gen:
        seen.append(p.step)
        flag["stop"] = p.step == 2
    # the stop asked after step 2 ends it there, the operation's finally block run
    assert seen == [1, 2] and closed == [2]
    assert run_to_end(until_stopped(counting(10, closed), stop)) == (True, None)
    assert run_to_end(until_stopped(counting(2, []), never)) == (False, "done")


@pytest.fixture(scope="module")
def tiny_segmenter():
    from napari_pix2rep.model.nets.unet import UNet, preset
    from napari_pix2rep.model.preprocess import PreprocessConfig
    from napari_pix2rep.model.segmenter import Segmenter

    torch.manual_seed(0)
    return Segmenter(UNet(preset("tiny")), preprocess=PreprocessConfig(target_spacing=1.5))


def test_prediction_yields_per_batch_and_stops_between_batches(tiny_segmenter):
    from napari_pix2rep.segment.predict import predict_iter, predict_volume

    data = np.random.default_rng(0).random((5, 32, 32)).astype(np.float32)
    gen = predict_iter(tiny_segmenter, data, (8.0, 1.5, 1.5), device="cpu", batch_size=2)
    seen = []
    value = run_to_end(gen, seen.append)
    assert [(p.stage, p.step, p.total) for p in seen] == [
        ("predict", 2, 5),
        ("predict", 4, 5),
        ("predict", 5, 5),
    ]
    plain = predict_volume(tiny_segmenter, data, (8.0, 1.5, 1.5), device="cpu", batch_size=2)
    np.testing.assert_array_equal(value.labels, plain.labels)

    # a cine: frame by frame, the same as each frame alone; stoppable after any batch
    cine = np.random.default_rng(1).random((3, 2, 32, 32)).astype(np.float32)
    seen = []
    whole = run_to_end(
        predict_iter(tiny_segmenter, cine, (1.0, 8.0, 1.5, 1.5), device="cpu"), seen.append
    )
    assert [p.step for p in seen] == [0, 1, 2, 3] and seen[-1].total == 3
    one = predict_volume(tiny_segmenter, cine[1], (8.0, 1.5, 1.5), device="cpu")
    np.testing.assert_array_equal(whole.labels[1], one.labels)
    np.testing.assert_array_equal(whole.probabilities[:, 1], one.probabilities)
    stopped, pred = run_to_end(
        until_stopped(predict_iter(tiny_segmenter, cine, (1, 8, 1.5, 1.5), "cpu"), lambda: True)
    )
    assert stopped and pred is None


def test_preset_and_loss_lists_have_one_home():
    from napari_pix2rep.cli import build_parser
    from napari_pix2rep.core.choices import DOCK_LOSSES, LOSSES, PRESET_NAMES
    from napari_pix2rep.model.nets.unet import PRESETS
    from napari_pix2rep.pretrain.config import PretrainConfig

    assert tuple(PRESETS) == PRESET_NAMES
    for loss in LOSSES:
        assert PretrainConfig(loss=loss).loss == loss
    assert set(DOCK_LOSSES) <= set(LOSSES)
    with pytest.raises(ValueError, match="Unknown loss"):
        PretrainConfig(loss="mse")
    pretrain = build_parser()._subparsers._group_actions[0].choices["pretrain"]
    choices = {a.dest: a.choices for a in pretrain._actions if a.choices}
    assert tuple(choices["preset"]) == PRESET_NAMES and tuple(choices["loss"]) == LOSSES


def test_cli_help_imports_no_torch_and_runs_as_a_module():
    code = (
        "import sys\n"
        "from napari_pix2rep.cli import build_parser\n"
        "build_parser().format_help()\n"
        "print([m for m in ('torch', 'qtpy', 'napari') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr
    run = subprocess.run(
        [sys.executable, "-m", "napari_pix2rep.cli", "--help"], capture_output=True, text=True
    )
    assert run.returncode == 0 and "pretrain" in run.stdout and "convert" in run.stdout
