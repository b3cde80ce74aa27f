"""Tests of napari_pix2rep.measure.report."""

from __future__ import annotations

import csv

import pytest

from napari_pix2rep.evaluation.phantom import make_phantom
from napari_pix2rep.measure.report import MeasuresTable, measures_table, write_csv


def test_measures_table_4d_3d_pair_and_single(tmp_path):
    cine = make_phantom(n_slices=6, size=(80, 80), n_frames=8, seed=4)
    t4 = measures_table(cine.labels, cine.spacing)
    names = [r[0] for r in t4.summary]
    assert names == [
        "LV EDV",
        "LV ESV",
        "LV EF",
        "RV EDV",
        "RV ESV",
        "RV EF",
        "Myocardial mass",
    ]
    ef = dict((n, v) for n, v, _ in t4.summary)["LV EF"]
    assert 30 < ef < 85 and len(t4.curve) == 8 and "ED = frame 0" in t4.note

    ed, es = cine.labels[0], cine.labels[cine.es_frame]
    pair = measures_table(ed, cine.spacing[1:], es)
    assert dict((n, v) for n, v, _ in pair.summary)["LV EF"] == pytest.approx(ef)
    swapped = measures_table(es, cine.spacing[1:], ed)
    assert "check the choice" in swapped.note
    single = measures_table(ed, cine.spacing[1:])
    assert [r[0] for r in single.summary] == ["LV volume", "RV volume", "MYO volume"]
    with pytest.raises(ValueError, match="same grid"):
        measures_table(ed, cine.spacing[1:], es[:-1])

    out = write_csv(tmp_path / "m.csv", t4)
    rows = list(csv.reader(open(out)))
    assert rows[0] == ["quantity", "value", "unit"] and rows[3][0] == "LV EF"
    assert rows[9] == ["frame", "LV_ml", "RV_ml", "MYO_ml"] and len(rows) == 10 + 8
    assert [p.name for p in tmp_path.iterdir()] == ["m.csv"]  # no temporary file left
    with pytest.raises(FileNotFoundError):
        write_csv(tmp_path / "missing" / "m.csv", MeasuresTable([]))
