"""The Measures tab's table: clinical measures of a segmentation as rows, and its CSV.

Imports neither Qt nor torch.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_pix2rep.io.outputs import atomic_write
from napari_pix2rep.measure.metrics import (
    cardiac_measures,
    cine_measures,
    measure_warnings,
    structure_volumes,
    volume_curve,
)

#: The volume curve's columns after the frame (keys of ``metrics.structure_volumes``).
CURVE_COLUMNS = ("LV_ml", "RV_ml", "MYO_ml")


@dataclass
class MeasuresTable:
    """Rows for the measures table: ``summary`` (quantity, value, unit) and a volume curve."""

    summary: list[tuple[str, float, str]]
    curve: list[dict[str, float]] = field(default_factory=list)
    note: str = ""


def measures_table(
    labels: np.ndarray,
    spacing: Sequence[float],
    es_labels: np.ndarray | None = None,
    ed: int | None = None,
    es: int | None = None,
) -> MeasuresTable:
    """Clinical measures of a segmentation (labels as in :mod:`napari_pix2rep.core.classes`).

    A 4D ``(t, z, y, x)`` segmentation gives EDV/ESV/EF/mass (ED = largest LV frame, ES =
    smallest, unless the frames ``ed`` / ``es`` are given) and the volume curve across
    frames; a 3D one with ``es_labels`` (the ES frame, same grid) gives the same measures
    with ``labels`` taken as ED; a 3D one alone gives its structure volumes. ``spacing``
    follows the axes of ``labels`` (mm).
    """
    labels = np.asarray(labels)
    spatial = tuple(float(s) for s in spacing)[-3:]
    if labels.ndim == 4:
        m = cine_measures(labels, spatial, ed=ed, es=es)
        curve = [{"frame": float(t), **c} for t, c in enumerate(volume_curve(labels, spatial))]
        ed_how = "given" if ed is not None else "largest LV"
        es_how = "given" if es is not None else "smallest LV"
        note = f"ED = frame {m.ed_frame} ({ed_how}), ES = frame {m.es_frame} ({es_how})."
        note = " ".join([note, *measure_warnings(m, curve)])
        return MeasuresTable(_measure_rows(m), curve, note)
    if labels.ndim != 3:
        raise ValueError(f"Expected a 3D or 4D segmentation, not shape {labels.shape}.")
    if es_labels is not None:
        es_labels = np.asarray(es_labels)
        if es_labels.shape != labels.shape:
            raise ValueError(
                f"The ED {labels.shape} and ES {es_labels.shape} segmentations are not on "
                "the same grid."
            )
        m = cardiac_measures(labels, es_labels, spatial)
        notes = measure_warnings(m, same=bool(np.array_equal(labels, es_labels)))
        if m.LV_ESV > m.LV_EDV:
            notes.append("The ES layer has a larger LV than the ED layer: check the choice.")
        return MeasuresTable(_measure_rows(m), [], " ".join(notes))
    v = structure_volumes(labels, spatial)
    rows = [
        ("LV volume", v["LV_ml"], "mL"),
        ("RV volume", v["RV_ml"], "mL"),
        ("MYO volume", v["MYO_ml"], "mL"),
    ]
    return MeasuresTable(rows, [], "One 3D volume: pick the ES layer for EF and mass.")


def _measure_rows(m) -> list[tuple[str, float, str]]:
    return [
        ("LV EDV", m.LV_EDV, "mL"),
        ("LV ESV", m.LV_ESV, "mL"),
        ("LV EF", m.LV_EF, "%"),
        ("RV EDV", m.RV_EDV, "mL"),
        ("RV ESV", m.RV_ESV, "mL"),
        ("RV EF", m.RV_EF, "%"),
        ("Myocardial mass", m.MYO_mass, "g"),
    ]


def _csv_text(table: MeasuresTable) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["quantity", "value", "unit"])
    for name, value, unit in table.summary:
        w.writerow([name, f"{value:.4f}", unit])
    if table.curve:
        w.writerow([])
        w.writerow(["frame", *CURVE_COLUMNS])
        for row in table.curve:
            w.writerow([int(row["frame"]), *(f"{row[k]:.4f}" for k in CURVE_COLUMNS)])
    return buf.getvalue()


def write_csv(path: str | os.PathLike[str], table: MeasuresTable) -> Path:
    """Write the table as CSV atomically (:func:`napari_pix2rep.io.outputs.atomic_write`)."""
    p = Path(path)
    if not p.parent.is_dir():
        raise FileNotFoundError(f"Cannot write {p.name}: the folder {p.parent} does not exist.")
    text = _csv_text(table).encode("utf-8")
    return atomic_write(p, lambda fh: fh.write(text))
