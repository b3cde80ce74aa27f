"""Make docs/screenshot.png: the dock after the loop on a real ACDC volume.

Two ED slices are "painted" with the expert mask (the few-slice-acdc slices), *Segment*
(linear probe, shipped backbone) runs in its worker, and the screenshot shows a slice
that was not annotated. Run under a virtual display:

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/screenshot.py docs/screenshot.png \\
        ../shared/data/acdc/training/patient005/patient005_frame01.nii.gz
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import imageio.v3 as iio
from qtpy.QtWidgets import QApplication

from napari_pix2rep._qt.launcher import make_viewer
from napari_pix2rep.nifti import read_nifti
from napari_pix2rep.protocols import few_slice_given


def main() -> None:
    out, path = sys.argv[1], Path(sys.argv[2])
    truth = read_nifti(path.with_name(path.name.replace(".nii", "_gt.nii")), kind="labels").data
    viewer, widget = make_viewer([str(path)])
    app = QApplication.instance()
    viewer.window._qt_window.resize(1400, 900)
    panel = widget.segment_panel
    ann = panel.new_annotation_layer()
    given = few_slice_given(truth)
    for z in given:
        ann.data[z] = truth[z]
    ann.refresh()
    panel.refresh_summary()
    panel.segment()
    while panel.runner.running:
        app.processEvents()
        time.sleep(0.02)
    shown = next(z for z in range(given[0] + 1, truth.shape[0]) if z not in given)
    viewer.dims.set_current_step(0, shown)
    viewer.layers.selection.active = viewer.layers[-1]
    for _ in range(30):
        app.processEvents()
    iio.imwrite(out, viewer.screenshot(canvas_only=False, flash=False))
    viewer.close()


if __name__ == "__main__":
    main()
