"""Make docs/screenshot.png: the dock after the loop on a real ACDC volume or 4D cine.

Two ED slices are "painted" with the expert mask (the few-slice-acdc slices), *Segment*
(linear probe, shipped backbone) runs in its worker, and the screenshot shows a slice
that was not annotated -- for a 4D cine, in the ES frame. The expert mask is the image's
``_gt`` file, or for a cine (``<case>_4d.nii.gz``) the ED frame's ``_gt`` file named by
the ``Info.cfg`` beside it. Run under a virtual display (any Qt binding napari supports;
the README's is PyQt6):

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/screenshot.py docs/screenshot.png \\
        ../shared/data/acdc/training/patient090/patient090_4d.nii.gz
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from qtpy.QtWidgets import QApplication

from napari_pix2rep._qt.launcher import make_viewer
from napari_pix2rep.evaluation.protocols import few_slice_given
from napari_pix2rep.io.nifti import read_nifti


def phases(path: Path) -> dict[str, int]:
    """``{"ED": n, "ES": n}`` (1-based frame numbers) from the Info.cfg beside ``path``."""
    text = (path.parent / "Info.cfg").read_text()
    return {p: int(re.search(rf"^{p}:\s*(\d+)", text, re.M).group(1)) for p in ("ED", "ES")}


def expert_mask(path: Path, ndim: int) -> tuple[np.ndarray, int | None, int | None]:
    """``(ED mask (z, y, x), ED frame index, ES frame index)``; frames are None for 3D."""
    if ndim == 3:
        gt = path.with_name(path.name.replace(".nii", "_gt.nii"))
        return read_nifti(gt, kind="labels").data, None, None
    frames = phases(path)
    case = path.name.split("_4d")[0]
    gt = path.with_name(f"{case}_frame{frames['ED']:02d}_gt.nii.gz")
    return read_nifti(gt, kind="labels").data, frames["ED"] - 1, frames["ES"] - 1


def segment_and_shoot(viewer, panel, ann, out: str, step: tuple[int, ...]) -> str:
    """Press Segment with the painted ``ann``, wait for it, show slice ``step`` (the leading
    axes: ``(z,)`` or ``(t, z)``) and write the window to ``out``; returns the status."""
    app = QApplication.instance()
    ann.refresh()
    panel.refresh_summary()
    panel.segment()
    while panel.runner.running:
        app.processEvents()
        time.sleep(0.02)
    for axis, index in enumerate(step):
        viewer.dims.set_current_step(axis, index)
    viewer.layers.selection.active = viewer.layers[-1]
    for _ in range(30):
        app.processEvents()
    iio.imwrite(out, viewer.screenshot(canvas_only=False, flash=False))
    status = panel.status.text()
    viewer.close()
    return status


def take(out: str, path: Path) -> str:
    """Run the loop on ``path`` and write the screenshot to ``out``; returns the status."""
    viewer, widget = make_viewer([str(path)])
    viewer.window.resize(1400, 900)
    image = viewer.layers[0]
    truth, ed, es = expert_mask(path, image.ndim)
    panel = widget.segment_panel
    ann = panel.new_annotation_layer()
    given = few_slice_given(truth)
    for z in given:
        if ed is None:
            ann.data[z] = truth[z]
        else:
            ann.data[ed, z] = truth[z]
    shown = next(z for z in range(given[0] + 1, truth.shape[0]) if z not in given)
    return segment_and_shoot(viewer, panel, ann, out, (shown,) if es is None else (es, shown))


if __name__ == "__main__":
    print(f"{sys.argv[1]}: {take(sys.argv[1], Path(sys.argv[2]))}")
