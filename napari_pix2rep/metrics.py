"""Segmentation quality and clinical measures (METHOD.md, "Metrics used here").

Labels follow the ACDC convention unless told otherwise: 1 RV cavity, 2 LV myocardium,
3 LV cavity. Volumes are voxel counts times the voxel volume from the header spacing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from .classes import LV, MYO, RV

MYO_DENSITY_G_PER_ML = 1.05


def dice_per_class(pred: np.ndarray, gt: np.ndarray, classes: Sequence[int]) -> dict[int, float]:
    """3D DICE of each class label; NaN where the class is absent from both volumes."""
    if pred.shape != gt.shape:
        raise ValueError(f"Prediction {pred.shape} and ground truth {gt.shape} differ in shape.")
    out = {}
    for c in classes:
        p, g = pred == c, gt == c
        denom = int(p.sum()) + int(g.sum())
        out[c] = 2.0 * int((p & g).sum()) / denom if denom else float("nan")
    return out


def voxel_volume_ml(spacing: Sequence[float]) -> float:
    """Volume of one voxel in mL from the spatial spacing (the last three values, mm)."""
    sz, sy, sx = (float(s) for s in spacing[-3:])
    return sz * sy * sx / 1000.0


def structure_volumes(labels: np.ndarray, spacing: Sequence[float]) -> dict[str, float]:
    """LV cavity, RV cavity and myocardium volumes (mL) of one 3D ``(z, y, x)`` frame."""
    v = voxel_volume_ml(spacing)
    return {
        "LV_ml": float((labels == LV).sum()) * v,
        "RV_ml": float((labels == RV).sum()) * v,
        "MYO_ml": float((labels == MYO).sum()) * v,
    }


@dataclass
class CardiacMeasures:
    """End-diastolic / end-systolic volumes (mL), ejection fractions (%), mass (g)."""

    LV_EDV: float
    LV_ESV: float
    LV_EF: float
    RV_EDV: float
    RV_ESV: float
    RV_EF: float
    MYO_mass: float
    ed_frame: int | None = None
    es_frame: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def ejection_fraction(edv: float, esv: float) -> float:
    """EF in percent from end-diastolic and end-systolic volumes (NaN when EDV is 0)."""
    return 100.0 * (edv - esv) / edv if edv > 0 else float("nan")


def cardiac_measures(ed: np.ndarray, es: np.ndarray, spacing: Sequence[float]) -> CardiacMeasures:
    """Measures from an end-diastolic and an end-systolic 3D segmentation.

    Myocardial mass is taken at end-diastole: MYO volume x 1.05 g/mL.
    """
    a, b = structure_volumes(ed, spacing), structure_volumes(es, spacing)
    return CardiacMeasures(
        LV_EDV=a["LV_ml"],
        LV_ESV=b["LV_ml"],
        LV_EF=ejection_fraction(a["LV_ml"], b["LV_ml"]),
        RV_EDV=a["RV_ml"],
        RV_ESV=b["RV_ml"],
        RV_EF=ejection_fraction(a["RV_ml"], b["RV_ml"]),
        MYO_mass=a["MYO_ml"] * MYO_DENSITY_G_PER_ML,
    )


def volume_curve(labels4d: np.ndarray, spacing: Sequence[float]) -> list[dict[str, float]]:
    """Structure volumes (mL) of every frame of a ``(t, z, y, x)`` segmentation."""
    return [structure_volumes(frame, spacing) for frame in labels4d]


def ed_es_frames(labels4d: np.ndarray, spacing: Sequence[float]) -> tuple[int, int]:
    """End-diastolic and end-systolic frames of a ``(t, z, y, x)`` segmentation without an
    Info.cfg: the frames of largest and smallest LV cavity volume (the first on ties).

    ``spacing`` is the spatial ``(z, y, x)`` spacing in mm."""
    lv = [c["LV_ml"] for c in volume_curve(labels4d, spacing)]
    return int(np.argmax(lv)), int(np.argmin(lv))


def cine_measures(
    labels4d: np.ndarray,
    spacing: Sequence[float],
    ed: int | None = None,
    es: int | None = None,
) -> CardiacMeasures:
    """Measures from a 4D ``(t, z, y, x)`` segmentation; ``spacing`` is the spatial
    ``(z, y, x)`` spacing. ED and ES default to :func:`ed_es_frames`; either can be given."""
    n = len(labels4d)
    for what, frame in (("ED", ed), ("ES", es)):
        if frame is not None and not 0 <= frame < n:
            raise ValueError(f"The {what} frame {frame} is not among the frames 0 to {n - 1}.")
    if ed is None or es is None:
        auto_ed, auto_es = ed_es_frames(labels4d, spacing)
        ed = auto_ed if ed is None else ed
        es = auto_es if es is None else es
    m = cardiac_measures(labels4d[ed], labels4d[es], spacing)
    m.ed_frame, m.es_frame = ed, es
    return m
