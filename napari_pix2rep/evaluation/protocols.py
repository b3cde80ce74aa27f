"""The evaluation protocols (docs/benchmarks.md), as functions (benchmarks and tests call them).

one-shot-acdc
    labelled patients (ED and ES, all slices) train a segmenter; it segments the
    held-out patients' ED and ES volumes; 3D DICE per volume and class, native grid.
few-slice-acdc
    per held-out patient, the truth of k = 2 ED slices (the LV-containing slices at
    positions round(n/3) and round(2n/3) of the n that contain LV) trains a segmenter
    for that patient; DICE on the rest of ED (the given slices left out) and all of ES.
annotation loop
    few-slice, then round after round the worst-segmented unpainted slice (most wrong
    voxels, of ED or ES) is replaced by its expert mask -- a perfect correction, which
    may be background only -- and both phases are segmented again; DICE after 2, 3, 4,
    ... painted slices, every round on the same slices (those nobody painted by the last
    round).
zero clicks
    a model that segments without painting (the default cardiac model) segments each
    held-out patient's ED and ES; DICE on every slice.

Every protocol segments with the Segment recipe (:mod:`napari_pix2rep.segment.recipe`), as the
dock and ``pix2rep segment`` do, with the settings given. Images are preprocessed from the
image alone; truth is read only to train (the given slices) and to score. With
``localise`` prediction runs on the heart region (:mod:`napari_pix2rep.segment.localise`): in
few-slice (on by default, measured) from the given slices, what the user painted; in
one-shot (off by default, not yet measured) from the motion between the held-out
patient's own ED and ES images.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from napari_pix2rep.core.classes import STRUCTURES
from napari_pix2rep.io.acdc import Case
from napari_pix2rep.io.nifti import Volume
from napari_pix2rep.measure.metrics import dice_per_class, ejection_fraction, structure_volumes
from napari_pix2rep.model.segmenter import Segmenter
from napari_pix2rep.segment.predict import DEFAULT_CLEANUP
from napari_pix2rep.segment.recipe import Annotation, Scan, segment
from napari_pix2rep.segment.settings import SegmentSettings
from napari_pix2rep.segment.train_config import TrainConfig
from napari_pix2rep.segment.training import train_segmenter

if TYPE_CHECKING:
    from napari_pix2rep.segment.recipe import Model

CLASS_NAMES = STRUCTURES


@dataclass
class LoadedCase:
    """A case with its four volumes in memory."""

    case: Case
    ed: Volume
    es: Volume
    ed_gt: Volume
    es_gt: Volume

    @classmethod
    def load(cls, case: Case) -> LoadedCase:
        v = case.load()
        return cls(case, v["ed"], v["es"], v["ed_gt"], v["es_gt"])


def score(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """DICE of RV, MYO, LV (and their mean) over the voxels where ``mask`` is True."""
    if mask is not None:
        pred, gt = pred[mask], gt[mask]
    d = dice_per_class(pred, gt, (1, 2, 3))
    out = {name: d[i + 1] for i, name in enumerate(CLASS_NAMES)}
    out["mean"] = float(np.nanmean(list(out.values())))
    return out


def evaluate(
    segmenter: Segmenter,
    cases: Sequence[LoadedCase],
    device: str = "auto",
    cleanup: bool = DEFAULT_CLEANUP,
    localise: bool = False,
) -> list[dict]:
    """Segment ED and ES of every case with a trained segmenter (the recipe, nothing
    painted); one row per volume with its DICE."""
    settings = SegmentSettings(train=False, localise=localise, cleanup=cleanup)
    rows = []
    for c in cases:
        outcome = segment(_scans(c), [None, None], segmenter, settings, device)
        for k, (phase, gt) in enumerate((("ED", c.ed_gt), ("ES", c.es_gt))):
            rows.append(
                {
                    "case": c.case.id,
                    "group": c.case.group,
                    "phase": phase,
                    **score(outcome.masks[k].labels, gt.data),
                }
            )
    return rows


def train_on_cases(
    source,
    preprocess,
    cases: Sequence[LoadedCase],
    cfg: TrainConfig,
    device: str = "auto",
) -> tuple[Segmenter, float]:
    """A segmenter trained on all slices of the cases' ED and ES volumes; (model, seconds)."""
    t0 = time.perf_counter()
    images = [(v.data, v.spacing) for c in cases for v in (c.ed, c.es)]
    labels = [g.data for c in cases for g in (c.ed_gt, c.es_gt)]
    seg = train_segmenter(source, preprocess, images, labels, cfg, device=device)
    return seg, time.perf_counter() - t0


def few_slice_given(gt: np.ndarray, k: int = 2) -> list[int]:
    """The k given ED slices: LV-containing slices at positions round(j n / (k+1))."""
    lv = [z for z in range(gt.shape[0]) if (gt[z] == 3).any()]
    if not lv:
        raise ValueError("No slice contains the LV; the few-slice protocol needs one.")
    n = len(lv)
    picks = [lv[min(n - 1, int(round(j * n / (k + 1))))] for j in range(1, k + 1)]
    return sorted(set(picks))


def _scans(case: LoadedCase) -> list[Scan]:
    return [
        Scan(v.data, v.spacing, phase, v.affine) for phase, v in (("ED", case.ed), ("ES", case.es))
    ]


def segment_phases(
    model: Model,
    case: LoadedCase,
    ed_labels: np.ndarray | None,
    es_labels: np.ndarray | None,
    settings: SegmentSettings,
    device: str = "auto",
    background: tuple[set[int], set[int]] = (set(), set()),
):
    """Segment ED and ES from what is painted in them: ``(ED, ES predictions, train s)``.

    The Segment recipe (:func:`napari_pix2rep.segment.recipe.segment_iter`) on the case's
    two phases, exactly as the dock and ``pix2rep segment`` run it with these
    ``settings``; ``model`` is a segmenter or ``(backbone, preprocessing)``; None labels:
    that phase is not painted. ``background`` lists ED's and ES's background-only slices
    (flat indices).
    """
    anns = [
        None if labels is None else Annotation(labels, frozenset(bg))
        for labels, bg in ((ed_labels, background[0]), (es_labels, background[1]))
    ]
    outcome = segment(_scans(case), anns, model, settings, device)
    return outcome.masks[0], outcome.masks[1], outcome.report.seconds.get("train", 0.0)


def ejection_fractions(ed: np.ndarray, es: np.ndarray, case: LoadedCase) -> dict[str, float]:
    """LV and RV ejection fraction (%) of ED / ES label maps on the case's grids."""
    vols = [structure_volumes(m, v.spacing) for m, v in ((ed, case.ed), (es, case.es))]
    return {
        f"{k}_EF": ejection_fraction(vols[0][f"{k}_ml"], vols[1][f"{k}_ml"]) for k in ("LV", "RV")
    }


def _ef_columns(ed: np.ndarray, es: np.ndarray, case: LoadedCase) -> dict[str, float]:
    truth = ejection_fractions(case.ed_gt.data, case.es_gt.data, case)
    mine = ejection_fractions(ed, es, case)
    return {**mine, **{f"{k}_truth": v for k, v in truth.items()}}


def zero_clicks(
    model: Model,
    cases: Sequence[LoadedCase],
    settings: SegmentSettings,
    device: str = "auto",
    progress: Callable[[str], None] | None = None,
) -> list[dict]:
    """zero clicks: the recipe on each case's ED and ES with nothing painted (a model
    that segments without painting); DICE on every slice, LV/RV EF, seconds."""
    rows = []
    for c in cases:
        t0 = time.perf_counter()
        ed, es, _ = segment_phases(model, c, None, None, settings, device)
        seconds = time.perf_counter() - t0
        ef = _ef_columns(ed.labels, es.labels, c)
        for phase, pred, gt in (("ED", ed, c.ed_gt), ("ES", es, c.es_gt)):
            rows.append(
                {
                    "case": c.case.id,
                    "group": c.case.group,
                    "phase": phase,
                    "seconds": round(seconds, 2),
                    **score(pred.labels, gt.data),
                    **ef,
                }
            )
        if progress is not None:
            err = ef["LV_EF"] - ef["LV_EF_truth"]
            progress(
                f"{c.case.id}: ED {rows[-2]['mean']:.3f}, ES {rows[-1]['mean']:.3f}, "
                f"LV EF error {err:+.1f} points"
            )
    return rows


def few_slice(
    model: Model,
    cases: Sequence[LoadedCase],
    settings: SegmentSettings,
    device: str = "auto",
    k: int = 2,
    progress: Callable[[str], None] | None = None,
    versus_zero: bool = False,
) -> list[dict]:
    """few-slice-acdc: the recipe per case from k painted ED slices; DICE on the rest.

    With ``versus_zero`` (a zero-click model) each row also has the zero-click DICE on
    the same voxels (``zero_mean``, ``zero_RV``, ...), so adapting is compared with not
    painting at all, patient by patient.
    """
    rows = []
    for c in cases:
        given = few_slice_given(c.ed_gt.data, k)
        labels = np.zeros_like(c.ed_gt.data)
        labels[given] = c.ed_gt.data[given]
        t0 = time.perf_counter()
        ed, es, train_s = segment_phases(model, c, labels, None, settings, device)
        seconds = time.perf_counter() - t0
        zero = segment_phases(model, c, None, None, settings, device)[:2] if versus_zero else None
        keep = np.ones(c.ed.data.shape, bool)
        keep[given] = False
        ef = _ef_columns(ed.labels, es.labels, c)  # the painted slices are kept as painted
        for j, (phase, pred, gt, mask) in enumerate(
            (("ED", ed, c.ed_gt, keep), ("ES", es, c.es_gt, None))
        ):
            row = {
                "case": c.case.id,
                "group": c.case.group,
                "phase": phase,
                "given": given,
                "train_s": round(train_s, 2),
                "seconds": round(seconds, 2),
                **score(pred.labels, gt.data, mask),
                **ef,
            }
            if zero is not None:
                z = score(zero[j].labels, gt.data, mask)
                row.update({f"zero_{name}": v for name, v in z.items()})
            rows.append(row)
        if progress is not None:
            err = ef["LV_EF"] - ef["LV_EF_truth"]
            progress(
                f"{c.case.id}: ED {rows[-2]['mean']:.3f}, ES {rows[-1]['mean']:.3f}, "
                f"LV EF error {err:+.1f} points"
            )
    return rows


def _worst_slice(preds: dict, truth: dict, painted: dict) -> tuple[int, str, int]:
    """``(wrong voxels, phase, slice)`` of the unpainted slice with most wrong voxels."""
    worst = (-1, "", -1)
    for ph, pred in preds.items():
        for z in range(truth[ph].shape[0]):
            if z not in painted[ph]:
                worst = max(worst, (int((pred[z] != truth[ph][z]).sum()), ph, z))
    return worst


def annotation_loop(
    model: Model,
    cases: Sequence[LoadedCase],
    settings: SegmentSettings,
    rounds: int = 3,
    device: str = "auto",
    progress: Callable[[str], None] | None = None,
    with_zero: bool = False,
) -> list[dict]:
    """The annotation loop (module docstring): one row per case and round.

    Every round of a case is scored on the **same** slices: those nobody painted by the
    last round, so rounds compare like for like. Each row has ``painted`` (number of
    painted slices), ``ED`` / ``ES`` / ``mean`` DICE (RV/MYO/LV mean) on that fixed set,
    and the slice added after it. ``with_zero`` (a zero-click model) adds a round -1
    with nothing painted, scored on the same slices.
    """
    rows = []
    for c in cases:
        truth = {"ED": c.ed_gt.data, "ES": c.es_gt.data}
        painted = {"ED": set(few_slice_given(truth["ED"], 2)), "ES": set()}
        runs = []  # (round, painted count, predictions, train s, seconds, next)
        if with_zero:
            t0 = time.perf_counter()
            ed, es, _ = segment_phases(model, c, None, None, settings, device)
            runs.append(
                (-1, 0, {"ED": ed.labels, "ES": es.labels}, 0.0, time.perf_counter() - t0, None)
            )
        for r in range(rounds + 1):
            labels = {}
            for ph, gt in truth.items():
                labels[ph] = np.zeros_like(gt)
                idx = sorted(painted[ph])
                labels[ph][idx] = gt[idx]
            background = tuple({z for z in painted[ph] if not truth[ph][z].any()} for ph in truth)
            t0 = time.perf_counter()
            ed, es, train_s = segment_phases(
                model,
                c,
                labels["ED"],
                labels["ES"] if painted["ES"] else None,
                settings,
                device,
                background,
            )
            preds = {"ED": ed.labels, "ES": es.labels}
            n_painted = len(painted["ED"]) + len(painted["ES"])
            nxt = None
            if r < rounds:
                wrong, ph, z = _worst_slice(preds, truth, painted)
                if wrong > 0:
                    painted[ph].add(z)
                    nxt = [ph, z]
            runs.append((r, n_painted, preds, train_s, time.perf_counter() - t0, nxt))
        for r, n, preds, train_s, seconds, nxt in runs:
            row = {"case": c.case.id, "round": r, "painted": n, "train_s": round(train_s, 2)}
            row["seconds"] = round(seconds, 2)
            for ph, pred in preds.items():
                keep = np.ones(truth[ph].shape, bool)
                keep[sorted(painted[ph])] = False
                row[ph] = score(pred, truth[ph], keep)["mean"]
            row["mean"] = float(np.nanmean([row["ED"], row["ES"]]))
            if nxt is not None:
                row["next"] = nxt
            rows.append(row)
            if progress is not None:
                m, e, s_ = row["mean"], row["ED"], row["ES"]
                progress(f"{c.case.id} round {r}: {m:.3f} (ED {e:.3f}, ES {s_:.3f})")
    return rows


def summarise(rows: Sequence[dict]) -> dict[str, float]:
    """Mean DICE per class and overall over rows (NaN-aware)."""
    out = {}
    for k in (*CLASS_NAMES, "mean"):
        v = np.asarray([r[k] for r in rows], dtype=float)
        out[k] = float(v[np.isfinite(v)].mean()) if np.isfinite(v).any() else float("nan")
    return out
