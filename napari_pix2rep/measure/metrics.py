"""Segmentation quality and clinical measures (the figures of README.md, "Results", and
docs/benchmarks.md).

Labels follow the ACDC convention unless told otherwise: 1 RV cavity, 2 LV myocardium,
3 LV cavity. ``classes`` (label ``i`` is name ``i``, background first, as a model file
stores them) says otherwise: RV, MYO and LV are found by name (:func:`structure_labels`),
and a structure the list lacks measures NaN. Volumes are voxel counts times the voxel
volume from the header spacing. :func:`measure_warnings` says when a measure is not one
(an empty segmentation, ED and ES the same, an ES without LV).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from napari_pix2rep.core.classes import LV, MYO, RV, STRUCTURES

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


def structure_labels(classes: Sequence[str] | None = None) -> dict[str, int | None]:
    """``{"RV": value, "MYO": value, "LV": value}``: each structure's label value in
    ``classes`` (names compared ignoring case; label 0, the background, never counts),
    None where the list lacks it. Without ``classes``, the ACDC convention."""
    if classes is None:
        return {"RV": RV, "MYO": MYO, "LV": LV}
    names = [str(c).strip().casefold() for c in classes]
    return {
        s: names.index(s.casefold()) if s.casefold() in names[1:] else None for s in STRUCTURES
    }


def structure_volumes(
    labels: np.ndarray, spacing: Sequence[float], classes: Sequence[str] | None = None
) -> dict[str, float]:
    """LV cavity, RV cavity and myocardium volumes (mL) of one 3D ``(z, y, x)`` frame;
    NaN for a structure that ``classes`` lacks (see :func:`structure_labels`)."""
    v = voxel_volume_ml(spacing)
    value = structure_labels(classes)
    return {
        f"{s}_ml": float((labels == value[s]).sum()) * v if value[s] is not None else math.nan
        for s in ("LV", "RV", "MYO")
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
    """EF in percent from end-diastolic and end-systolic volumes (NaN when EDV is 0 or
    NaN)."""
    return 100.0 * (edv - esv) / edv if edv > 0 else float("nan")


def cardiac_measures(
    ed: np.ndarray,
    es: np.ndarray,
    spacing: Sequence[float],
    classes: Sequence[str] | None = None,
) -> CardiacMeasures:
    """Measures from an end-diastolic and an end-systolic 3D ``(z, y, x)`` segmentation
    on one grid of ``spacing`` (mm); ``classes`` as in :func:`structure_volumes`.

    Myocardial mass is taken at end-diastole: MYO volume x 1.05 g/mL.
    """
    a, b = structure_volumes(ed, spacing, classes), structure_volumes(es, spacing, classes)
    return CardiacMeasures(
        LV_EDV=a["LV_ml"],
        LV_ESV=b["LV_ml"],
        LV_EF=ejection_fraction(a["LV_ml"], b["LV_ml"]),
        RV_EDV=a["RV_ml"],
        RV_ESV=b["RV_ml"],
        RV_EF=ejection_fraction(a["RV_ml"], b["RV_ml"]),
        MYO_mass=a["MYO_ml"] * MYO_DENSITY_G_PER_ML,
    )


def volume_curve(
    labels4d: np.ndarray, spacing: Sequence[float], classes: Sequence[str] | None = None
) -> list[dict[str, float]]:
    """Structure volumes (mL) of every frame of a ``(t, z, y, x)`` segmentation."""
    return [structure_volumes(frame, spacing, classes) for frame in labels4d]


def ed_es_frames(
    labels4d: np.ndarray, spacing: Sequence[float], classes: Sequence[str] | None = None
) -> tuple[int, int]:
    """End-diastolic and end-systolic frames of a ``(t, z, y, x)`` segmentation without an
    Info.cfg: the frames of largest and smallest LV cavity volume (the first on ties),
    frames without any LV never taken as ES (a frame the segmentation missed is no
    systole). ValueError when no frame holds an LV.

    ``spacing`` is the spatial ``(z, y, x)`` spacing in mm."""
    lv = np.array([c["LV_ml"] for c in volume_curve(labels4d, spacing, classes)])
    if not (lv > 0).any():
        raise ValueError("No frame of the segmentation holds an LV, so ED and ES are unknown.")
    return int(np.argmax(lv)), int(np.argmin(np.where(lv > 0, lv, np.inf)))


def cine_measures(
    labels4d: np.ndarray,
    spacing: Sequence[float],
    ed: int | None = None,
    es: int | None = None,
    classes: Sequence[str] | None = None,
) -> CardiacMeasures:
    """Measures from a 4D ``(t, z, y, x)`` segmentation; ``spacing`` is the spatial
    ``(z, y, x)`` spacing. ED and ES default to :func:`ed_es_frames`; either can be given."""
    n = len(labels4d)
    for what, frame in (("ED", ed), ("ES", es)):
        if frame is not None and not 0 <= frame < n:
            raise ValueError(f"The {what} frame {frame} is not among the frames 0 to {n - 1}.")
    if ed is None or es is None:
        auto_ed, auto_es = ed_es_frames(labels4d, spacing, classes)
        ed = auto_ed if ed is None else ed
        es = auto_es if es is None else es
    m = cardiac_measures(labels4d[ed], labels4d[es], spacing, classes)
    m.ed_frame, m.es_frame = ed, es
    return m


def measure_warnings(
    m: CardiacMeasures,
    curve: Sequence[dict[str, float]] = (),
    same: bool = False,
) -> list[str]:
    """Sentences saying which of ``m``'s numbers are not measures, or doubtful.

    ``curve`` is the cine's :func:`volume_curve` (frames without LV are named); ``same``
    says that ED and ES are one file. Empty list: nothing to say.
    """
    out = []
    if same or (m.ed_frame is not None and m.ed_frame == m.es_frame):
        what = f"frame {m.ed_frame}" if m.ed_frame is not None and not same else "segmentation"
        out.append(f"ED and ES are the same {what}: the ejection fractions say nothing.")
    for s in ("LV", "RV"):
        edv, esv = getattr(m, f"{s}_EDV"), getattr(m, f"{s}_ESV")
        if math.isnan(edv):
            out.append(f"The classes have no {s}: its volumes and EF are not measured.")
        elif edv == 0:
            out.append(f"The ED segmentation holds no {s}: its EF cannot be computed.")
        elif esv == 0:
            out.append(
                f"The ES segmentation holds no {s}: an EF of 100 % means the segmentation "
                "missed it there."
            )
    if math.isnan(m.MYO_mass):
        out.append("The classes have no MYO: the myocardial mass is not measured.")
    empty = [t for t, c in enumerate(curve) if not c["LV_ml"] > 0]
    if empty and len(empty) < len(curve):
        listed = ", ".join(map(str, empty[:10])) + (" ..." if len(empty) > 10 else "")
        frames = f"Frame {listed} holds" if len(empty) == 1 else f"Frames {listed} hold"
        out.append(f"{frames} no LV (missed by the segmentation?): never taken as ES.")
    return out


def segmentation_warnings(labels: np.ndarray) -> list[str]:
    """Sentences on a predicted ``(z, y, x)`` or ``(t, z, y, x)`` segmentation that holds
    nothing, or (a cine) frames that hold nothing; empty list: nothing to say."""
    labels = np.asarray(labels)
    if not (labels > 0).any():
        return [
            "The segmentation is empty: no structure was found (no heart in the view, or "
            "an image unlike those the model learnt from)."
        ]
    if labels.ndim != 4:
        return []
    empty = [t for t, frame in enumerate(labels) if not (frame > 0).any()]
    if not empty:
        return []
    listed = ", ".join(map(str, empty[:10])) + (" ..." if len(empty) > 10 else "")
    frames = f"Frame {listed} holds" if len(empty) == 1 else f"Frames {listed} hold"
    return [f"{frames} no segmentation (no structure found there)."]
