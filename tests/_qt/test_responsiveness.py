"""What keeps the window responsive: the segmentation layer is added at the click (not
when the result arrives), no busy indicator animates while the model loads, and the
responsiveness benchmark measures and reports."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from napari_pix2rep.evaluation.phantom import make_phantom
from napari_pix2rep.model.checkpoint import BACKBONE, atomic_torch_save

pytest.importorskip("qtpy")

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "ui_responsiveness.py"


def _untrained_backbone(path):
    from napari_pix2rep.model.nets.unet import UNet, preset
    from napari_pix2rep.model.preprocess import PreprocessConfig

    net = UNet(preset("tiny"))
    obj = {
        "format": BACKBONE,
        "version": 1,
        "arch": net.config.to_dict(),
        "preprocess": PreprocessConfig().to_dict(),
        "state_dict": net.state_dict(),
        "meta": {"steps": 0},
    }
    return atomic_torch_save(obj, path)


def _scene(viewer, widget):
    ph = make_phantom(n_slices=4, size=(64, 64), seed=1)
    viewer.add_image(ph.image, name="scan", scale=ph.spacing)
    panel = widget.segment_panel
    panel.refresh_layers()
    panel.image_combo.setCurrentText("scan")
    ann = panel.new_annotation_layer()
    ann.data[1] = ph.labels[1]
    ann.refresh()
    panel.set_mode("linear")
    panel.steps_spin.setValue(10)
    widget.model_box.device_combo.setCurrentText("cpu")
    return panel


def test_segmentation_layer_is_added_at_the_click(dock, tmp_path, wait_idle, notes):
    viewer, widget = dock
    panel = _scene(viewer, widget)
    widget.model_box.set_path(str(_untrained_backbone(tmp_path / "bb.pt")))
    assert panel.segment()
    seg = viewer.layers["scan segmentation"]  # there before the job has run
    assert panel.runner.running and seg.metadata["pix2rep"]["role"] == "segmentation"
    # an empty bar, not Qt's busy indicator (its animation repaints the window 30x a second)
    assert panel.progress.maximum() > 0 and panel.status.text() == "Loading the model…"
    wait_idle(panel.runner, 120)
    assert not [m for s, m in notes if s == "error"], notes
    assert [ly.name for ly in viewer.layers].count("scan segmentation") == 1
    assert viewer.layers["scan segmentation"].data.any()  # the result went into it


def test_layer_made_for_a_failed_job_is_removed(dock, tmp_path, wait_idle, notes):
    viewer, widget = dock
    panel = _scene(viewer, widget)
    junk = tmp_path / "scan.nii.gz"
    junk.write_bytes(b"not a model")
    widget.model_box.set_path(str(junk))
    assert panel.segment()
    wait_idle(panel.runner, 60)
    assert "scan segmentation" not in [ly.name for ly in viewer.layers]
    assert any("scan.nii.gz" in m for s, m in notes if s == "error"), notes


@pytest.mark.slow
def test_benchmark_reports_gaps_idle_and_loaded(tmp_path):
    cmd = [sys.executable, str(BENCH), "--quick", "--jobs", "pretrain", "--out", str(tmp_path)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    payload = json.loads((tmp_path / "ui_responsiveness.json").read_text())
    runs = payload["runs"]
    assert [(r["job"], r["busy_processes"]) for r in runs] == [("pretrain", 0), ("pretrain", 1)]
    for r in runs:
        assert r["ticks"] > 10 and math.isfinite(r["max_ms"]) and r["p99_ms"] <= r["max_ms"]
        assert r["max_ms"] < 5000  # tolerant: the machine may be busy; a hang is not
    assert "| pretrain | 1 |" in (tmp_path / "ui_responsiveness.md").read_text()
