"""The benchmark scripts' smoke mode, on a synthetic ACDC-like dataset."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from napari_pix2rep.evaluation.phantom import write_phantom_dataset

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom_acdc")
    write_phantom_dataset(root, n_cases=5, n_slices=6, size=(96, 96), n_frames=6)
    return root


@pytest.mark.slow
@pytest.mark.parametrize(
    ("script", "extra"),
    [
        ("one_shot.py", []),
        (
            "few_slice.py",
            ["--modes", "linear,finetune", "--baseline", "--registration", "8,20,0.1"],
        ),
    ],
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
def test_localisation_scores_both_regions(dataset, tmp_path):
    out = tmp_path / "results"
    cmd = [sys.executable, str(BENCH / "localisation.py"), "--data", str(dataset)]
    run = subprocess.run(cmd + ["--out", str(out)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = json.loads((out / "localisation.json").read_text())["rows"]
    assert {r["region"] for r in rows} == {"motion", "painted"}
    assert all(0.0 <= r["inside"] <= 1.0 and 0.0 < r["area"] <= 1.0 for r in rows)
    # the painted slices' box holds the painted heart
    assert min(r["inside"] for r in rows if r["region"] == "painted") > 0.9


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


def test_one_shot_merges_partial_runs(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import one_shot

    def part(tag, method, means, val=("p005", "p010")):
        runs = [
            {
                "method": method,
                "budget": 1,
                "draw": d,
                "summary": dict.fromkeys(("RV", "MYO", "LV", "mean"), m),
            }
            for d, m in enumerate(means)
        ]
        payload = {"command": tag, "model": "m.pt", "validation": list(val), "runs": runs}
        (tmp_path / f"one_shot_{tag}.json").write_text(json.dumps(payload))

    part("a", "pix2rep-linear", [0.5, 0.7])
    part("b", "scratch", [0.2, 0.4])
    one_shot.merge(str(tmp_path), ["a", "b"])
    md = (tmp_path / "one_shot.md").read_text()
    assert "| pix2rep-linear | 1 | 2 |" in md and "| scratch | 1 | 2 |" in md
    assert "pix2rep-linear - scratch, 1 patient(s): +0.300" in md
    part("c", "scratch", [0.1], val=("p005",))
    with pytest.raises(SystemExit, match="same validation patients"):
        one_shot.merge(str(tmp_path), ["a", "c"])


@pytest.mark.slow
def test_finetune_recipe_quick_mode_scores_each_variant(dataset, tmp_path):
    out = tmp_path / "results"
    cmd = [sys.executable, str(BENCH / "finetune_recipe.py"), "--data", str(dataset), "--quick"]
    cmd += ["--variants", "mild,strong-flip-lr", "--out", str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    payload = json.loads((out / "finetune_recipe.json").read_text())
    assert [r["variant"] for r in payload["runs"]] == ["mild", "strong-flip-lr"]
    assert all(0.0 <= r["scores"]["6"]["summary"]["mean"] <= 1.0 for r in payload["runs"])
    assert payload["variants"]["strong-flip-lr"]["augment"]["flip_p"] == 0.5


@pytest.mark.slow
@pytest.mark.realdata
def test_other_scanner_quick_mode_on_the_sunnybrook_series(dataset, tmp_path):
    series = BENCH.parent.parent / "shared" / "data" / "sunnybrook_dicom" / "SCD0000101"
    if not series.is_dir():
        pytest.skip(f"Sunnybrook series not found at {series} (real-data tests need ../shared)")
    out = tmp_path / "results"
    cmd = [sys.executable, str(BENCH / "other_scanner.py"), "--data", str(dataset), "--quick"]
    cmd += ["--series", str(series), "--methods", "linear", "--draws", "1", "--out", str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    (r,) = json.loads((out / "other_scanner.json").read_text())["runs"]
    assert 0.0 <= r["summary"]["LV"] <= 1.0 and len(r["summary"]["LV per phase"]) == 2


@pytest.mark.slow
def test_interactive_loop_scores_every_round(dataset, tmp_path):
    out = tmp_path / "results"
    cmd = [sys.executable, str(BENCH / "interactive.py"), "--data", str(dataset), "--quick"]
    cmd += ["--rounds", "1", "--out", str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = json.loads((out / "interactive.json").read_text())["rows"]
    assert {r["round"] for r in rows} == {0, 1} and all(r["seconds"] > 0 for r in rows)
    assert "fuse=True" in (out / "interactive.md").read_text()


def test_registration_flag_is_checked():
    sys.path.insert(0, str(BENCH))
    try:
        from common import registration
    finally:
        sys.path.remove(str(BENCH))
    assert registration("6,80,0.05").control_spacing == 6
    with pytest.raises(Exception, match="GRID,STEPS,BENDING"):
        registration("6,80")
