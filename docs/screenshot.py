"""Make docs/screenshot.png: an ACDC volume, its predicted segmentation and the dock.

Run under a virtual display, after a linear probe and a prediction with the CLI:

    pix2rep train --image P003/patient003_frame01.nii.gz --labels .../frame01_gt.nii.gz \\
        --image .../frame15.nii.gz --labels .../frame15_gt.nii.gz --out /tmp/seg.pt
    pix2rep predict --model /tmp/seg.pt P010/patient010_frame01.nii.gz --out-dir /tmp/pred
    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/screenshot.py docs/screenshot.png \\
        P010/patient010_frame01.nii.gz /tmp/pred/patient010_frame01_seg.nii.gz
"""

from __future__ import annotations

import sys

import imageio.v3 as iio
from qtpy.QtWidgets import QApplication

from napari_pix2rep._qt.launcher import make_viewer


def main() -> None:
    out, paths = sys.argv[1], sys.argv[2:]
    viewer, _ = make_viewer(paths)
    app = QApplication.instance()
    viewer.window._qt_window.resize(1400, 900)
    image = viewer.layers[0]
    viewer.dims.set_current_step(0, image.data.shape[0] // 2)
    viewer.layers.selection.active = image
    for _ in range(30):
        app.processEvents()
    iio.imwrite(out, viewer.screenshot(canvas_only=False, flash=False))
    viewer.close()


if __name__ == "__main__":
    main()
