"""The README's Python example runs as written (on a small synthetic scan)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from napari_pix2rep.evaluation.phantom import make_phantom
from napari_pix2rep.io.nifti import read_nifti
from napari_pix2rep.io.nifti_write import write_nifti

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(tmp_path, monkeypatch):
    text = README.read_text(encoding="utf-8")
    section = text.split("## Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)[1]
    ph = make_phantom(n_slices=4, size=(64, 64), seed=1)
    vol = ph.to_volume()
    write_nifti(tmp_path / "heart.nii.gz", vol.data, vol, kind="image")
    write_nifti(tmp_path / "heart_labels.nii.gz", ph.labels, vol, kind="labels")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    out = read_nifti(tmp_path / "heart_seg.nii.gz", kind="labels")
    assert out.shape == vol.shape
    np.testing.assert_allclose(out.affine, vol.affine)
