"""Make docs/screenshot_dicom.png: the dock segmenting a DICOM cine opened as a folder.

The Sunnybrook series (GE, 12 slices x 20 phases, oblique) opens through the plugin's
reader; two end-diastolic slices are "painted" from the expert contours (LV cavity inside
the i-contour, myocardium between it and the o-contour; these contours have no RV), the
linear probe on the shipped backbone segments every slice of every frame, and the
screenshot shows an ED slice that was not annotated. Run under a virtual display:

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/screenshot_dicom.py \\
        docs/screenshot_dicom.png ../shared/data/sunnybrook_dicom/SCD0000101
"""

from __future__ import annotations

import sys
from pathlib import Path

from screenshot import segment_and_shoot  # docs/screenshot.py, beside this script

from napari_pix2rep._qt.launcher import make_viewer
from napari_pix2rep.io.dicom import read_dicom
from napari_pix2rep.io.sunnybrook import contoured_slices


def main() -> None:
    out, series = sys.argv[1], Path(sys.argv[2])
    vol = read_dicom(series)
    painted = {
        (c.frame, c.slice): c.labels for c in contoured_slices(series, vol) if c.has_myocardium
    }
    viewer, widget = make_viewer([str(series)])
    viewer.window._qt_window.resize(1400, 900)
    panel = widget.segment_panel
    ann = panel.new_annotation_layer()
    keys = sorted(painted)
    given = [keys[len(keys) // 3], keys[2 * len(keys) // 3]]
    for t, k in given:
        ann.data[t, k] = painted[(t, k)]
    shown = next(key for key in keys if key not in given and key[1] > given[0][1])
    print(f"{out}: {segment_and_shoot(viewer, panel, ann, out, shown)}")


if __name__ == "__main__":
    main()
