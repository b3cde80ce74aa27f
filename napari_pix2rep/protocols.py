"""The evaluation protocols of DESIGN.md, as functions (benchmarks and tests call them).

one-shot-acdc
    labelled patients (ED and ES, all slices) train a segmenter; it segments the
    held-out patients' ED and ES volumes; 3D DICE per volume and class, native grid.
few-slice-acdc
    per held-out patient, the truth of k = 2 ED slices (the LV-containing slices at
    positions round(n/3) and round(2n/3) of the n that contain LV) trains a segmenter
    for that patient; DICE on the rest of ED (the given slices left out) and all of ES.

Images are preprocessed from the image alone; truth is read only to train (the given
slices) and to score.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .acdc import Case
from .metrics import dice_per_class
from .nifti import Volume
from .predict import DEFAULT_CLEANUP, predict_volume
from .segment import Segmenter, TrainConfig, train_segmenter

CLASS_NAMES = ("RV", "MYO", "LV")


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
) -> list[dict]:
    """Segment ED and ES of every case; one row per volume with its DICE."""
    rows = []
    for c in cases:
        for phase, img, gt in (("ED", c.ed, c.ed_gt), ("ES", c.es, c.es_gt)):
            pred = predict_volume(segmenter, img.data, img.spacing, device, cleanup=cleanup)
            rows.append(
                {
                    "case": c.case.id,
                    "group": c.case.group,
                    "phase": phase,
                    **score(pred.labels, gt.data),
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


def few_slice(
    source,
    preprocess,
    cases: Sequence[LoadedCase],
    cfg: TrainConfig,
    device: str = "auto",
    cleanup: bool = DEFAULT_CLEANUP,
    k: int = 2,
    progress: Callable[[str], None] | None = None,
) -> list[dict]:
    """few-slice-acdc: one segmenter per case from k ED slices; DICE on the rest."""
    rows = []
    for c in cases:
        given = few_slice_given(c.ed_gt.data, k)
        labels = np.zeros_like(c.ed_gt.data)
        labels[given] = c.ed_gt.data[given]
        t0 = time.perf_counter()
        seg = train_segmenter(
            source, preprocess, [(c.ed.data, c.ed.spacing)], [labels], cfg, device=device
        )
        train_s = time.perf_counter() - t0
        keep = np.ones(c.ed.data.shape, bool)
        keep[given] = False
        for phase, img, gt, mask in (("ED", c.ed, c.ed_gt, keep), ("ES", c.es, c.es_gt, None)):
            pred = predict_volume(seg, img.data, img.spacing, device, cleanup=cleanup)
            rows.append(
                {
                    "case": c.case.id,
                    "group": c.case.group,
                    "phase": phase,
                    "given": given,
                    "train_s": round(train_s, 2),
                    **score(pred.labels, gt.data, mask),
                }
            )
        if progress is not None:
            progress(f"{c.case.id}: ED {rows[-2]['mean']:.3f}, ES {rows[-1]['mean']:.3f}")
    return rows


def summarise(rows: Sequence[dict]) -> dict[str, float]:
    """Mean DICE per class and overall over rows (NaN-aware)."""
    out = {}
    for k in (*CLASS_NAMES, "mean"):
        v = np.asarray([r[k] for r in rows], dtype=float)
        out[k] = float(v[np.isfinite(v)].mean()) if np.isfinite(v).any() else float("nan")
    return out
