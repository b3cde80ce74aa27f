"""docs/screenshot.py takes the README screenshot from a 4D cine (ED frame painted from
its ``_gt`` file named by Info.cfg, the ES frame shown)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("qtpy")

SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "screenshot.py"


@pytest.fixture
def screenshot_module():
    spec = importlib.util.spec_from_file_location("pix2rep_screenshot", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def cine_case(tmp_path):
    """An ACDC-style case folder with a 4D cine, ED = frame 2 (index 1), ES = frame 3."""
    from napari_pix2rep.evaluation.phantom import make_phantom
    from napari_pix2rep.io.nifti_write import write_nifti

    case = tmp_path / "case007"
    case.mkdir()
    cine = make_phantom(n_slices=5, size=(64, 64), n_frames=3, seed=3)
    path = write_nifti(case / "case007_4d.nii.gz", cine.image, cine.to_volume(), kind="image")
    ed = cine.frame(1)
    write_nifti(
        case / "case007_frame02_gt.nii.gz", ed.labels, ed.to_volume("image"), kind="labels"
    )
    (case / "Info.cfg").write_text("ED: 2\nES: 3\nNbFrame: 3\n")
    return Path(path), cine


def test_expert_mask_of_a_cine_is_its_ed_frame(screenshot_module, cine_case):
    path, cine = cine_case
    mask, ed, es = screenshot_module.expert_mask(path, 4)
    assert (ed, es) == (1, 2)
    np.testing.assert_array_equal(mask, cine.labels[1])


def test_screenshot_of_a_4d_cine(screenshot_module, cine_case, make_napari_viewer, monkeypatch):
    import imageio.v3 as iio
    import napari

    from napari_pix2rep._qt.settings import Settings

    Settings().set("segment/steps", 20)  # a quick linear probe (the test settings file)
    monkeypatch.setattr(napari, "Viewer", lambda **kw: make_napari_viewer(**kw))
    path, _ = cine_case
    out = path.parent / "shot.png"
    status = screenshot_module.take(str(out), path)
    assert status.startswith("Done in"), status
    image = iio.imread(out)
    assert image.ndim == 3 and image.shape[0] > 400 and image.shape[1] > 600
