"""Model-file summaries from metadata: kind, steps (through ``init``), data, warnings."""

from __future__ import annotations

import os

import pytest
import torch

from napari_pix2rep.model.checkpoint import BACKBONE, SEGMENTER, ModelFileError, atomic_torch_save
from napari_pix2rep.model.model_info import (
    describe_sources,
    read_model_info,
    summary,
    undertrained_warning,
)


def _backbone(path, steps, data=("layer:scan",), init=None, n_slices=6):
    meta = {"method": "pix2rep-infonce", "steps": steps, "data": list(data), "init": init}
    meta["n_slices"] = n_slices
    obj = {"format": BACKBONE, "version": 1, "state_dict": {"w": torch.zeros(3)}, "meta": meta}
    return atomic_torch_save(obj, path)


def test_summary_steps_data_and_warning(tmp_path):
    shipped = read_model_info(_backbone(tmp_path / "shipped.pt", 12500, ["/d/acdc/p1/a.nii"]))
    short = read_model_info(_backbone(tmp_path / "short.pt", 7))
    assert short.kind == "backbone" and short.steps == short.total_steps == 7
    assert (
        summary(short) == "Backbone (pix2rep-infonce), 7 steps, on 1 open image (scan), 6 slices."
    )
    warning = undertrained_warning(short, shipped)
    assert "Far less trained" in warning and "7 vs 12500" in warning
    assert undertrained_warning(shipped, shipped) is None
    assert undertrained_warning(short, None) is None
    long = read_model_info(_backbone(tmp_path / "long.pt", 5000))
    assert undertrained_warning(long, shipped) is None  # 40 % of the shipped steps


def test_steps_add_up_through_the_model_a_run_started_from(tmp_path):
    base = _backbone(tmp_path / "base.pt", 12000)
    child = read_model_info(_backbone(tmp_path / "child.pt", 7, init=str(base)))
    assert (child.steps, child.total_steps) == (7, 12007)
    assert "7 steps on top of base.pt (12 007 in all)" in summary(child)
    shipped = read_model_info(_backbone(tmp_path / "shipped.pt", 12500))
    assert undertrained_warning(child, shipped) is None  # a short continuation is fine
    os.remove(base)  # unknown history: no total, no warning
    orphan = read_model_info(_backbone(tmp_path / "orphan.pt", 7, init=str(base)))
    assert orphan.total_steps is None and undertrained_warning(orphan, shipped) is None


def test_rewritten_file_is_read_again(tmp_path):
    path = tmp_path / "run.pt"
    _backbone(path, 3)
    assert read_model_info(path).steps == 3
    _backbone(path, 300, n_slices=60)  # the next checkpoint of the same run
    assert read_model_info(path).steps == 300


def test_segmenter_and_bad_files(tmp_path):
    seg = tmp_path / "seg.pt"
    atomic_torch_save(
        {
            "format": SEGMENTER,
            "version": 1,
            "classes": ["background", "LV"],
            "state_dict": {},
            "meta": {"mode": "linear"},
        },
        seg,
    )
    info = read_model_info(seg)
    assert summary(info) == "Segmenter (linear probe) for background, LV."
    assert undertrained_warning(info, read_model_info(_backbone(tmp_path / "s.pt", 9))) is None
    junk = tmp_path / "scan.nii.gz"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="scan.nii.gz is not a napari-pix2rep model"):
        read_model_info(junk)
    with pytest.raises(ModelFileError, match="does not exist"):
        read_model_info(tmp_path / "missing.pt")


def test_describe_sources():
    files = ["/d/acdc/p1/a.nii.gz", "/d/acdc/p2/b.nii.gz"]
    assert describe_sources(files) == "2 files in /d/acdc"
    assert describe_sources(["layer:a", "layer:b"], 12) == "2 open images (a, b), 12 slices"
    assert describe_sources([]) == "unknown data"
