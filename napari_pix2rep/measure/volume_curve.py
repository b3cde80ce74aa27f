"""The LV / RV volume curve of a segmentation: its data, CSV, picture and one-page report.

A cine ``(t, z, y, x)`` segmentation gives one point per frame with ED and ES marked
(the frames :func:`napari_pix2rep.measure.metrics.cine_measures` takes: largest / smallest LV
unless given); an ED and an ES 3D segmentation give the pair as two points. Frames
without any label were not segmented: they are listed, left out of the line (a gap, not
a zero volume) and written as such in the CSV.

:func:`draw_curve` draws on a matplotlib ``Axes`` (the dock's Qt canvas uses it);
:func:`curve_png` renders with the Agg backend (no display, no pyplot state);
:func:`report_html` is a self-contained page (the PNG embedded as base64). Files are
written with :func:`napari_pix2rep.io.outputs.atomic_write`. Imports neither Qt nor torch;
matplotlib only when drawing.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_pix2rep.core.classes import BASE_COLORS, LV, RV
from napari_pix2rep.io.outputs import atomic_write
from napari_pix2rep.measure.metrics import cine_measures, structure_volumes, volume_curve

#: Line colours: the dock's class colours of LV and RV (RGBA, 0-1).
LV_COLOR, RV_COLOR = BASE_COLORS[LV], BASE_COLORS[RV]


@dataclass(frozen=True)
class VolumeCurve:
    """Volumes (mL) per point: the frames of a cine, or ED and ES of a pair.

    ``frames``: the frame numbers (a pair: ``(0, 1)``); ``lv_ml`` / ``rv_ml`` / ``myo_ml``:
    arrays of ``len(frames)``; ``ed`` / ``es``: positions in ``frames``; ``segmented``:
    the frames holding any label; ``pair``: two 3D volumes, not a cine.
    """

    frames: tuple[int, ...]
    lv_ml: np.ndarray
    rv_ml: np.ndarray
    myo_ml: np.ndarray
    ed: int
    es: int
    segmented: tuple[int, ...]
    pair: bool = False

    def label(self, i: int) -> str:
        """``"ED"``, ``"ES"`` or ``""`` for the point at position ``i``."""
        return "ED" if i == self.ed else "ES" if i == self.es else ""

    def segmented_text(self) -> str:
        """Which frames were segmented, in words (``"frames 0-9, 12 (11 of 20)"``)."""
        if self.pair:
            return "the ED and ES volumes (two 3D segmentations)"
        n, done = len(self.frames), list(self.segmented)
        if not done:
            return f"none of the {n} frames"
        runs, start = [], done[0]
        for a, b in zip(done, [*done[1:], None]):
            if b != a + 1:
                runs.append(f"{start}" if start == a else f"{start}-{a}")
                start = b
        word = "frame" if len(done) == 1 else "frames"
        return f"{word} {', '.join(runs)} ({len(done)} of {n})"


def _segmented(labels: np.ndarray) -> tuple[int, ...]:
    lab = np.asarray(labels)
    return tuple(int(t) for t in np.flatnonzero(lab.reshape(lab.shape[0], -1).any(axis=1)))


def cine_curve(
    labels: np.ndarray,
    spacing: Sequence[float],
    ed: int | None = None,
    es: int | None = None,
    classes: Sequence[str] | None = None,
) -> VolumeCurve:
    """The curve of a ``(t, z, y, x)`` segmentation; ``spacing`` ends with the spatial
    ``(z, y, x)`` spacing (mm). ED / ES as :func:`napari_pix2rep.measure.metrics.cine_measures`
    (ValueError when no frame holds an LV and they are not given)."""
    lab = np.asarray(labels)
    if lab.ndim != 4:
        raise ValueError(f"A volume curve needs a 4D (cine) segmentation, not shape {lab.shape}.")
    spatial = tuple(float(s) for s in spacing)[-3:]
    m = cine_measures(lab, spatial, ed=ed, es=es, classes=classes)
    vols = volume_curve(lab, spatial, classes)
    segmented = _segmented(lab)
    return VolumeCurve(
        frames=tuple(range(lab.shape[0])),
        lv_ml=np.array([v["LV_ml"] for v in vols], dtype=float),
        rv_ml=np.array([v["RV_ml"] for v in vols], dtype=float),
        myo_ml=np.array([v["MYO_ml"] for v in vols], dtype=float),
        ed=int(m.ed_frame),
        es=int(m.es_frame),
        segmented=segmented,
    )


def pair_curve(
    ed_labels: np.ndarray,
    es_labels: np.ndarray,
    spacing: Sequence[float],
    classes: Sequence[str] | None = None,
) -> VolumeCurve:
    """ED and ES as two points from two ``(z, y, x)`` segmentations on one grid."""
    a, b = np.asarray(ed_labels), np.asarray(es_labels)
    if a.ndim != 3 or a.shape != b.shape:
        raise ValueError(
            f"The ED {a.shape} and ES {b.shape} segmentations must be 3D on one grid."
        )
    spatial = tuple(float(s) for s in spacing)[-3:]
    va, vb = structure_volumes(a, spatial, classes), structure_volumes(b, spatial, classes)
    return VolumeCurve(
        frames=(0, 1),
        lv_ml=np.array([va["LV_ml"], vb["LV_ml"]]),
        rv_ml=np.array([va["RV_ml"], vb["RV_ml"]]),
        myo_ml=np.array([va["MYO_ml"], vb["MYO_ml"]]),
        ed=0,
        es=1,
        segmented=tuple(i for i, x in enumerate((a, b)) if x.any()),
        pair=True,
    )


# -- CSV ---------------------------------------------------------------------------------
def _num(v: float) -> str:
    return "" if math.isnan(v) else f"{v:.4f}"


def csv_text(curve: VolumeCurve, summary: Sequence[tuple[str, float, str]] = ()) -> str:
    """The measures (``summary`` rows: quantity, value, unit), a blank line, then one row
    per point: ``frame, phase (ED/ES), segmented (yes/no), LV_ml, RV_ml, MYO_ml``; the
    volumes of a frame not segmented are left empty."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if summary:
        w.writerow(["quantity", "value", "unit"])
        for name, value, unit in summary:
            w.writerow([name, _num(float(value)), unit])
        w.writerow([])
    w.writerow(["frame", "phase", "segmented", "LV_ml", "RV_ml", "MYO_ml"])
    for i, f in enumerate(curve.frames):
        done = i in curve.segmented if curve.pair else f in curve.segmented
        vols = (curve.lv_ml[i], curve.rv_ml[i], curve.myo_ml[i]) if done else (math.nan,) * 3
        w.writerow(
            [
                "" if curve.pair else f,
                curve.label(i),
                "yes" if done else "no",
                *(_num(v) for v in vols),
            ]
        )
    return buf.getvalue()


def _check_folder(path: Path) -> None:
    if not path.parent.is_dir():
        raise FileNotFoundError(
            f"Cannot write {path.name}: the folder {path.parent} does not exist."
        )


def write_csv(
    path: str | os.PathLike[str],
    curve: VolumeCurve,
    summary: Sequence[tuple[str, float, str]] = (),
) -> Path:
    """Write :func:`csv_text` atomically; returns the path."""
    p = Path(path)
    _check_folder(p)
    text = csv_text(curve, summary).encode("utf-8")
    return atomic_write(p, lambda fh: fh.write(text))


# -- picture -----------------------------------------------------------------------------
def _shown(curve: VolumeCurve, values: np.ndarray) -> np.ndarray:
    """The values with frames not segmented as NaN (a gap in the line)."""
    out = np.asarray(values, dtype=float).copy()
    if not curve.pair:
        mask = np.ones(len(curve.frames), dtype=bool)
        mask[[curve.frames.index(f) for f in curve.segmented]] = False
        out[mask] = math.nan
    return out


def draw_curve(ax: Any, curve: VolumeCurve, color: str | None = None) -> None:
    """Draw the curve on a matplotlib ``Axes``: LV and RV lines (points for a pair), ED
    and ES marked; ``color`` is the text and frame colour (matplotlib's default: None)."""
    x = np.arange(len(curve.frames)) if curve.pair else np.asarray(curve.frames)
    text = {"color": color} if color is not None else {}
    style = {"marker": "o", "linestyle": "none", "markersize": 7} if curve.pair else {"lw": 2}
    for name, values, c in (("LV", curve.lv_ml, LV_COLOR), ("RV", curve.rv_ml, RV_COLOR)):
        y = _shown(curve, values)
        if np.isnan(y).all():
            continue
        ax.plot(x, y, color=c, label=f"{name} volume", **style)
        if not curve.pair:
            for i in (curve.ed, curve.es):
                if not math.isnan(y[i]):
                    ax.plot(x[i], y[i], "o", color=c, markersize=6)
    if curve.pair:
        ax.set_xticks(x, ["ED", "ES"])
        ax.set_xlim(-0.5, 1.5)
    else:
        for i, what in ((curve.ed, "ED"), (curve.es, "ES")):
            ax.axvline(x[i], color=color or "0.4", ls="--", lw=1)
            ax.annotate(
                f"{what} ({curve.frames[i]})",
                (x[i], 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(3, -12),
                textcoords="offset points",
                color=color or "0.2",
                fontsize=8,
            )
        ax.set_xlabel("frame", **text)
    ax.set_ylabel("volume (mL)", **text)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    if ax.get_lines():
        ax.legend(loc="lower right", fontsize=8, framealpha=0.6)
    if color is not None:
        ax.tick_params(colors=color)
        for spine in ax.spines.values():
            spine.set_color(color)


def curve_png(curve: VolumeCurve, size: tuple[float, float] = (6.0, 3.5), dpi: int = 120) -> bytes:
    """The curve as PNG bytes, drawn with matplotlib's Agg backend (``size`` in inches)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    draw_curve(ax, curve)
    ax.set_title("LV and RV volume" + (" at ED and ES" if curve.pair else " over the cycle"))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def write_png(path: str | os.PathLike[str], curve: VolumeCurve) -> Path:
    """Write :func:`curve_png` atomically; returns the path."""
    p = Path(path)
    _check_folder(p)
    data = curve_png(curve)
    return atomic_write(p, lambda fh: fh.write(data))


# -- report ------------------------------------------------------------------------------
_STYLE = """
body { font-family: sans-serif; max-width: 52em; margin: 2em auto; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 1.5em; }
table { border-collapse: collapse; } td, th { padding: 2px 10px; text-align: left; }
td.v { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) { background: #f3f3f3; } img { max-width: 100%; }
.note { color: #555; }
"""


def report_html(
    curve: VolumeCurve,
    summary: Sequence[tuple[str, float, str]],
    *,
    title: str,
    model: Sequence[tuple[str, str]] = (),
    note: str = "",
    png: bytes | None = None,
) -> str:
    """A one-page, self-contained HTML report: the measures (``summary`` rows), the curve
    (``png``, else :func:`curve_png`, embedded as base64), which frames were segmented,
    the ED / ES frames, and the model and its provenance (``model``: label, text rows).
    Every text is HTML-escaped."""
    e = html.escape
    rows = "\n".join(
        f"<tr><td>{e(n)}</td><td class='v'>{'—' if math.isnan(v) else f'{v:.1f}'}</td>"
        f"<td>{e(u)}</td></tr>"
        for n, v, u in summary
    )
    img = base64.b64encode(png if png is not None else curve_png(curve)).decode("ascii")
    phases = (
        "ED and ES: the two layers measured"
        if curve.pair
        else f"ED = frame {curve.frames[curve.ed]}, ES = frame {curve.frames[curve.es]}"
    )
    model_rows = "\n".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in model)
    made = time.strftime("%Y-%m-%d %H:%M")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>
<style>{_STYLE}</style></head><body>
<h1>{e(title)}</h1>
<p class="note">Made by napari-pix2rep on {e(made)}. Not for clinical use without review.</p>
<h2>Measures</h2>
<table><tr><th>Measure</th><th>Value</th><th>Unit</th></tr>
{rows}
</table>
<p>{e(phases)}.{" " + e(note) if note else ""}</p>
<h2>Volume curve</h2>
<img alt="LV and RV volume curve" src="data:image/png;base64,{img}">
<p>Segmented: {e(curve.segmented_text())}.</p>
<h2>Model</h2>
<table>
{model_rows or "<tr><td>not recorded</td></tr>"}
</table>
</body></html>
"""


def write_report(
    path: str | os.PathLike[str],
    curve: VolumeCurve,
    summary: Sequence[tuple[str, float, str]],
    **kwargs: Any,
) -> Path:
    """Write :func:`report_html` (same keyword arguments) atomically; returns the path."""
    p = Path(path)
    _check_folder(p)
    text = report_html(curve, summary, **kwargs).encode("utf-8")
    return atomic_write(p, lambda fh: fh.write(text))
