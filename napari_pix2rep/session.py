"""The clinician's loop as plain functions, shared by the napari dock and its tests.

Class lists and colours, the voxels a new prediction changes, the slices a user
corrected, "suggest the next slice", the measures table and its CSV, and the one-sentence
message an error becomes. Arrays are in display order, ``(z, y, x)`` or ``(t, z, y, x)``;
a slice position is ``(z,)`` or ``(t, z)`` as in
:func:`napari_pix2rep.annotations.annotated_slice_summary`.

Imports neither Qt nor torch.
"""

from __future__ import annotations

import csv
import io
import os
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .annotations import DEFAULT_CLASSES
from .metrics import cardiac_measures, cine_measures, structure_volumes, volume_curve
from .nifti import METADATA_KEY
from .nifti_limits import format_bytes

__all__ = [
    "DEFAULT_CLASSES",
    "MeasuresTable",
    "changed_voxels",
    "class_colors",
    "edited_slices",
    "error_message",
    "format_classes",
    "format_positions",
    "layer_spacing",
    "measures_table",
    "out_of_memory",
    "parse_classes",
    "slice_update",
    "suggest_slice",
    "write_csv",
]

#: RGBA colours of the default classes: background transparent, RV blue, MYO green, LV red.
BASE_COLORS: dict[int, tuple[float, float, float, float]] = {
    0: (0.0, 0.0, 0.0, 0.0),
    1: (0.20, 0.45, 1.00, 1.0),
    2: (0.15, 0.80, 0.30, 1.0),
    3: (1.00, 0.25, 0.20, 1.0),
}
EXTRA_COLORS = (
    (1.00, 0.85, 0.10, 1.0),
    (0.85, 0.30, 0.95, 1.0),
    (0.10, 0.85, 0.90, 1.0),
    (1.00, 0.55, 0.10, 1.0),
    (0.60, 0.40, 0.20, 1.0),
    (0.95, 0.60, 0.75, 1.0),
)


# --------------------------------------------------------------------------- classes


def parse_classes(text: str | Sequence[str]) -> tuple[str, ...]:
    """Class names from ``"background, RV, MYO, LV"`` (or a list); label ``i`` is name ``i``.

    Raises ``ValueError`` (one sentence) for fewer than two names or a repeated name.
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    names = tuple(str(n).strip() for n in items if str(n).strip())
    if len(names) < 2:
        raise ValueError(
            "Give at least two comma-separated classes, background first (e.g. "
            "background, RV, MYO, LV)."
        )
    seen = set()
    for n in names:
        if n.lower() in seen:
            raise ValueError(f"The class {n!r} is listed twice.")
        seen.add(n.lower())
    return names


def format_classes(classes: Iterable[str]) -> str:
    """``("background", "RV")`` -> ``"background, RV"``."""
    return ", ".join(classes)


def class_colors(n_classes: int) -> dict[int, tuple[float, float, float, float]]:
    """RGBA colour of each label value ``0 .. n_classes - 1`` (0 transparent)."""
    out = {}
    for i in range(n_classes):
        if i in BASE_COLORS:
            out[i] = BASE_COLORS[i]
        else:
            out[i] = EXTRA_COLORS[(i - len(BASE_COLORS)) % len(EXTRA_COLORS)]
    return out


# --------------------------------------------------------------------------- geometry


def layer_spacing(
    metadata: Mapping[str, Any] | None, scale: Sequence[float], ndim: int
) -> tuple[float, ...]:
    """Voxel spacing (display order) of a layer: the NIfTI metadata's, else its ``scale``."""
    meta = (metadata or {}).get(METADATA_KEY) or {}
    stored = tuple(float(s) for s in meta.get("spacing", ()))
    if len(stored) == ndim:
        return stored
    scale = tuple(float(s) for s in scale)
    return scale[-ndim:] if len(scale) >= ndim else (1.0,) * (ndim - len(scale)) + scale


# --------------------------------------------------------------------------- edits


def _check_same_shape(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"The layers' shapes differ: {a.shape} and {b.shape}.")


def changed_voxels(old: np.ndarray, new: np.ndarray) -> tuple[np.ndarray, ...]:
    """Indices (one array per axis) of the voxels where ``new`` differs from ``old``."""
    old, new = np.asarray(old), np.asarray(new)
    _check_same_shape(old, new)
    return np.nonzero(old != new)


def edited_slices(current: np.ndarray, reference: np.ndarray) -> list[tuple[int, ...]]:
    """Positions of the 2D slices where ``current`` differs from ``reference`` (sorted)."""
    current, reference = np.asarray(current), np.asarray(reference)
    _check_same_shape(current, reference)
    if current.ndim < 3:
        raise ValueError(f"Expected a 3D or 4D volume, not shape {current.shape}.")
    diff = (current != reference).reshape(*current.shape[:-2], -1).any(axis=-1)
    return [tuple(int(i) for i in idx) for idx in np.argwhere(diff)]


def slice_update(
    target: np.ndarray, source: np.ndarray, positions: Iterable[tuple[int, ...]]
) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """What copying the ``positions`` slices of ``source`` into ``target`` changes.

    Returns ``(indices, values)`` for a history-recording write (``Labels.data_setitem``):
    only voxels of those slices whose value differs are listed.
    """
    target, source = np.asarray(target), np.asarray(source)
    _check_same_shape(target, source)
    lead = target.ndim - 2
    mask = np.zeros(target.shape[:lead], dtype=bool)
    for pos in positions:
        pos = tuple(int(p) for p in pos)
        if len(pos) != lead:
            raise ValueError(f"A slice position needs {lead} indices, got {pos}.")
        mask[pos] = True
    if not mask.any():
        empty = tuple(np.zeros(0, dtype=np.intp) for _ in range(target.ndim))
        return empty, np.zeros(0, dtype=source.dtype)
    differs = (target != source) & mask.reshape(*mask.shape, 1, 1)
    indices = np.nonzero(differs)
    return indices, source[indices]


def format_positions(positions: Sequence[tuple[int, ...]]) -> str:
    """``[(2,), (5,)]`` -> ``"slices 2, 5"``; 4D: ``"frame 0: slices 2, 5; frame 3: slice 1"``."""
    if not positions:
        return "none"

    def run(zs: list[int]) -> str:
        word = "slice" if len(zs) == 1 else "slices"
        return f"{word} {', '.join(str(z) for z in zs)}"

    if len(positions[0]) == 1:
        return run(sorted(p[0] for p in positions))
    frames: dict[int, list[int]] = {}
    for t, z in positions:
        frames.setdefault(int(t), []).append(int(z))
    return "; ".join(f"frame {t}: {run(sorted(zs))}" for t, zs in sorted(frames.items()))


def suggest_slice(
    uncertainty: np.ndarray,
    labels: np.ndarray,
    exclude: Iterable[tuple[int, ...]] = (),
) -> tuple[tuple[int, ...], float] | None:
    """The slice to annotate next: highest mean uncertainty inside the predicted heart.

    ``uncertainty`` and ``labels`` are the prediction's (same shape); slices without any
    predicted structure and the ``exclude`` positions (already annotated) are skipped.
    Returns ``(position, mean uncertainty)`` or None when no slice qualifies.
    """
    u, lab = np.asarray(uncertainty, dtype=np.float32), np.asarray(labels)
    _check_same_shape(u, lab)
    lead = lab.shape[:-2]
    heart = (lab > 0).reshape(*lead, -1)
    count = heart.sum(axis=-1)
    total = np.where(heart, u.reshape(*lead, -1), 0.0).sum(axis=-1)
    score = np.where(count > 0, total / np.maximum(count, 1), -1.0)
    for pos in exclude:
        pos = tuple(int(p) for p in pos)
        if len(pos) == len(lead):
            score[pos] = -1.0
    if score.max() < 0:
        return None
    best = np.unravel_index(int(np.argmax(score)), score.shape)
    return tuple(int(i) for i in best), float(score[best])


# --------------------------------------------------------------------------- measures


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
    """Clinical measures of a segmentation (labels 1 RV, 2 MYO, 3 LV).

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
        note = ""
        if m.LV_ESV > m.LV_EDV:
            note = "The ES layer has a larger LV than the ED layer: check the choice."
        return MeasuresTable(_measure_rows(m), [], note)
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
        w.writerow(["frame", "LV_ml", "RV_ml", "MYO_ml"])
        for row in table.curve:
            w.writerow(
                [int(row["frame"]), *(f"{row[k]:.4f}" for k in ("LV_ml", "RV_ml", "MYO_ml"))]
            )
    return buf.getvalue()


def write_csv(path: str | os.PathLike[str], table: MeasuresTable) -> Path:
    """Write the table as CSV atomically (temporary file in the folder, then rename)."""
    p = Path(path)
    if not p.parent.is_dir():
        raise FileNotFoundError(f"Cannot write {p.name}: the folder {p.parent} does not exist.")
    tmp = p.with_name(f".{p.name}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_text(_csv_text(table), encoding="utf-8")
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return p


# --------------------------------------------------------------------------- errors


def _first_line(text: str) -> str:
    text = text.strip()
    return text.splitlines()[0].strip() if text else ""


_OOM_WORDS = ("out of memory", "not enough memory", "allocate memory", "unable to allocate")
# "MB" in PyTorch's messages is MiB too
_ASKED = re.compile(r"allocate\s+([\d.]+)\s*(bytes|([KMGTPE])i?B)\b", re.IGNORECASE)


def out_of_memory(exc: BaseException) -> str | None:
    """``"ran out of memory (1.0 TiB was asked for)"`` when ``exc`` is an out-of-memory
    error (MemoryError, CUDA/MPS OutOfMemoryError, PyTorch's CPU allocator), else None."""
    text = _first_line(str(exc))
    if not (
        isinstance(exc, MemoryError)
        or type(exc).__name__ == "OutOfMemoryError"
        or any(w in text.lower() for w in _OOM_WORDS)
    ):
        return None
    asked = _ASKED.search(text)
    if asked is None:
        return "ran out of memory"
    n_bytes = float(asked[1]) * 1024 ** (" KMGTPE".index(asked[3].upper()) if asked[3] else 0)
    return f"ran out of memory ({format_bytes(n_bytes)} was asked for)"


def error_message(exc: BaseException) -> str:
    """An exception as one sentence for a notification (no traceback)."""
    text = _first_line(str(exc))
    name = type(exc).__name__
    oom = out_of_memory(exc)
    if oom is not None:
        return f"The device {oom}: use a smaller preset or batch size, or choose the CPU."
    if isinstance(exc, KeyError):
        text = f"missing entry {text}"
    if not text:
        text = name
    elif not isinstance(exc, ValueError | OSError | FloatingPointError):
        # library errors (AnnotationError, ModelFileError, NiftiError are ValueErrors)
        # already read as sentences; anything else gets its type for the bug report
        text = f"{name}: {text}"
    if len(text) > 300:
        text = text[:297].rstrip() + "..."
    return text if text.endswith((".", "!", "?")) else text + "."
