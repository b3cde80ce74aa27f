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

import numpy as np
import pydicom
from screenshot import segment_and_shoot  # docs/screenshot.py, beside this script
from skimage.draw import polygon

from napari_pix2rep._qt.launcher import make_viewer
from napari_pix2rep.dicom import read_dicom


def contour_labels(series: Path, vol) -> dict[tuple[int, int], np.ndarray]:
    """(frame, slice) -> painted (rows, cols) labels for each image with both contours."""
    contours = series.parent / f"{series.name}_contours"
    headers = {
        int(f.stem): pydicom.dcmread(f, stop_before_pixels=True) for f in series.glob("*.dcm")
    }
    inverse = np.linalg.inv(vol.affine)
    out = {}
    for outer in sorted((contours / "o-contours").glob("*.txt")):
        number = int(outer.name.split("-")[2])
        inner = contours / "i-contours" / outer.name.replace("ocontour", "icontour")
        ds = headers[number]
        ipp = tuple(float(v) for v in ds.ImagePositionPatient)
        same = [h for h in headers.values() if tuple(map(float, h.ImagePositionPatient)) == ipp]
        t = sorted(float(h.TriggerTime) for h in same).index(float(ds.TriggerTime))
        k = int(round((inverse @ [-ipp[0], -ipp[1], ipp[2], 1.0])[2]))
        lab = np.zeros(vol.shape[-2:], np.uint8)
        for path, value in ((outer, 2), (inner, 3)):
            pts = np.loadtxt(path)
            lab[polygon(pts[:, 1], pts[:, 0], lab.shape)] = value
        out[(t, k)] = lab
    return out


def main() -> None:
    out, series = sys.argv[1], Path(sys.argv[2])
    vol = read_dicom(series)
    painted = contour_labels(series, vol)
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
