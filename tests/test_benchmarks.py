"""The benchmark scripts' smoke mode, on a synthetic ACDC-like dataset."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from napari_pix2rep.phantom import write_phantom_dataset

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom_acdc")
    write_phantom_dataset(root, n_cases=5, n_slices=6, size=(96, 96), n_frames=6)
    return root


@pytest.mark.slow
@pytest.mark.parametrize(
    ("script", "extra"),
    [("one_shot.py", []), ("few_slice.py", ["--modes", "linear,finetune", "--baseline"])],
)
def test_quick_mode_writes_tables(dataset, tmp_path, script, extra):
    out = tmp_path / "results"
    cmd = [
        sys.executable,
        str(BENCH / script),
        "--data",
        str(dataset),
        "--quick",
        "--out",
        str(out),
        *extra,
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    name = script.removesuffix(".py")
    payload = json.loads((out / f"{name}.json").read_text())
    assert payload["machine"] and payload["command"].startswith(script)
    table = (out / f"{name}.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| pix2rep-")]
    assert rows and all(any(c.isdigit() for c in row) for row in rows), table


@pytest.mark.slow
def test_probe_vs_steps_scores_each_snapshot(dataset, tmp_path, tiny_backbone_file):
    out = tmp_path / "results"
    cmd = [sys.executable, str(BENCH / "probe_vs_steps.py"), "--data", str(dataset)]
    cmd += ["--quick", "--draws", "1", "--snapshots", str(tiny_backbone_file)]
    run = subprocess.run(cmd + ["--out", str(out)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    points = json.loads((out / "probe_vs_steps.json").read_text())["points"]
    assert [p["steps"] for p in points] == [0, 60]
    assert all(0 <= p["draws"][0]["mean"] <= 1 for p in points)
