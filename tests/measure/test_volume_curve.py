"""The volume curve's data, CSV, PNG and HTML report from segmentations of known volumes."""

from __future__ import annotations

import base64
import csv
import io
import re

import numpy as np
import pytest

from napari_pix2rep.measure import volume_curve as V
from napari_pix2rep.measure.report import measures_table

#: 10 mm voxels: one voxel is 1 mL
SPACING = (10.0, 10.0, 10.0)
LV_COUNTS = [5, 4, 2, 3, 0]  # frame 4 was not segmented at all
RV_COUNTS = [3, 3, 1, 2, 0]


def _cine() -> np.ndarray:
    lab = np.zeros((5, 2, 4, 4), dtype=np.uint8)
    for t, (lv, rv) in enumerate(zip(LV_COUNTS, RV_COUNTS)):
        flat = lab[t].reshape(-1)
        flat[:lv] = 3
        flat[lv : lv + rv] = 1
        flat[-1] = 2 if lv else 0  # one voxel of myocardium in the segmented frames
    return lab


def test_cine_curve_knows_volumes_phases_and_segmented_frames():
    c = V.cine_curve(_cine(), (1.0, *SPACING))  # a 4D spacing: the spatial part counts
    np.testing.assert_allclose(c.lv_ml, LV_COUNTS)
    np.testing.assert_allclose(c.rv_ml, RV_COUNTS)
    np.testing.assert_allclose(c.myo_ml, [1, 1, 1, 1, 0])
    assert (c.ed, c.es) == (0, 2)  # largest LV; smallest LV among frames holding one
    assert c.segmented == (0, 1, 2, 3)
    assert c.segmented_text() == "frames 0-3 (4 of 5)"
    assert [c.label(i) for i in range(5)] == ["ED", "", "ES", "", ""]
    given = V.cine_curve(_cine(), SPACING, ed=1, es=3)
    assert (given.ed, given.es) == (1, 3)
    with pytest.raises(ValueError, match="4D"):
        V.cine_curve(_cine()[0], SPACING)


def test_pair_curve_is_two_points():
    lab = _cine()
    c = V.pair_curve(lab[0], lab[2], SPACING)
    assert c.pair and c.frames == (0, 1) and (c.ed, c.es) == (0, 1)
    np.testing.assert_allclose(c.lv_ml, [5, 2])
    np.testing.assert_allclose(c.rv_ml, [3, 1])
    assert "ED and ES" in c.segmented_text()
    with pytest.raises(ValueError, match="one grid"):
        V.pair_curve(lab[0], lab[0, :1], SPACING)


def test_csv_lists_every_frame_with_phase_and_leaves_unsegmented_empty(tmp_path):
    c = V.cine_curve(_cine(), SPACING)
    table = measures_table(_cine(), SPACING)
    path = V.write_csv(tmp_path / "m.csv", c, table.summary)
    text = path.read_text()
    head, curve_part = text.split("\n\n")
    summary = {r[0]: r[1] for r in csv.reader(io.StringIO(head))}
    assert float(summary["LV EDV"]) == 5 and float(summary["LV ESV"]) == 2
    assert float(summary["LV EF"]) == pytest.approx(60.0)
    rows = list(csv.DictReader(io.StringIO(curve_part)))
    assert [r["frame"] for r in rows] == ["0", "1", "2", "3", "4"]
    assert [r["phase"] for r in rows] == ["ED", "", "ES", "", ""]
    assert [r["segmented"] for r in rows] == ["yes"] * 4 + ["no"]
    assert [r["LV_ml"] for r in rows] == ["5.0000", "4.0000", "2.0000", "3.0000", ""]
    assert [r["RV_ml"] for r in rows][:4] == ["3.0000", "3.0000", "1.0000", "2.0000"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        V.write_csv(tmp_path / "missing" / "m.csv", c)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_png_draws_both_lines_with_ed_es(tmp_path):
    from matplotlib.figure import Figure

    c = V.cine_curve(_cine(), SPACING)
    fig = Figure()
    ax = fig.add_subplot()
    V.draw_curve(ax, c)
    lv = next(ln for ln in ax.get_lines() if ln.get_label() == "LV volume")
    np.testing.assert_allclose(lv.get_ydata()[:4], LV_COUNTS[:4])
    assert np.isnan(lv.get_ydata()[4])  # a gap where nothing was segmented, not 0 mL
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["ED (0)", "ES (2)"]
    path = V.write_png(tmp_path / "curve.png", c)
    assert _png_size(path.read_bytes()) == (720, 420)  # 6 x 3.5 in at 120 dpi
    pair = V.pair_curve(_cine()[0], _cine()[2], SPACING)
    fig = Figure()
    ax = fig.add_subplot()
    V.draw_curve(ax, pair)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["ED", "ES"]
    assert all(ln.get_linestyle() == "None" for ln in ax.get_lines())  # points only


def test_html_report_holds_indices_curve_model_and_frames(tmp_path):
    c = V.cine_curve(_cine(), SPACING)
    table = measures_table(_cine(), SPACING)
    model = [("Backbone", "pix2rep_small.pt: Backbone (pix2rep), 20 000 steps, on <ACDC>")]
    path = V.write_report(
        tmp_path / "r.html", c, table.summary, title="patient & co", model=model, note="N."
    )
    page = path.read_text()
    assert "<title>patient &amp; co</title>" in page
    assert re.search(r"LV EF</td><td class='v'>60\.0</td>", page)
    assert "LV EDV</td><td class='v'>5.0</td>" in page
    assert "ED = frame 0, ES = frame 2" in page
    assert "Segmented: frames 0-3 (4 of 5)." in page
    assert "on &lt;ACDC&gt;" in page and "<ACDC>" not in page
    (b64,) = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert _png_size(base64.b64decode(b64)) == (720, 420)
