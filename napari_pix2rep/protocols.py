"""The evaluation protocols of DESIGN.md, as functions (benchmarks and tests call them).

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
    may be background only -- and both phases are segmented again; DICE on the slices
    nobody painted, after 2, 3, 4, ... painted slices.

Images are preprocessed from the image alone; truth is read only to train (the given
slices) and to score. With ``localise`` prediction runs on the heart region
(:mod:`napari_pix2rep.localise`): in few-slice (on by default, measured) from the given
slices, what the user painted; in one-shot (off by default, not yet measured) from the
motion between the held-out patient's own ED and ES images.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .acdc import Case
from .classes import STRUCTURES
from .localise import locate_heart
from .loop import carry_plan
from .metrics import dice_per_class, ejection_fraction, structure_volumes
from .nifti import Volume
from .predict import DEFAULT_CLEANUP, label_probabilities, predict_volume
from .progress import run_to_end
from .propagate import fuse_iter, propagate_slices
from .segmenter import Segmenter
from .train_config import TrainConfig
from .training import train_segmenter

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
    """Segment ED and ES of every case; one row per volume with its DICE."""
    rows = []
    for c in cases:
        region = None
        if localise and c.ed.data.shape == c.es.data.shape:
            region = locate_heart(c.ed.data, c.ed.spacing, other_frames=[c.es.data])
        for phase, img, gt in (("ED", c.ed, c.ed_gt), ("ES", c.es, c.es_gt)):
            pred = predict_volume(
                segmenter, img.data, img.spacing, device, cleanup=cleanup, region=region
            )
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


def _carry(case: LoadedCase, src: str, labels: dict, background: dict, n: int, region):
    """Painted slices of phase ``src`` not painted in the other phase, carried to it."""
    dst = "ES" if src == "ED" else "ED"
    vols = {"ED": case.ed.data, "ES": case.es.data}
    target = labels[dst].astype(np.int64)
    for _, todo in carry_plan(labels[dst], background[dst], [labels[src]]):  # the dock's rule
        carried = propagate_slices(vols[src], vols[dst], labels[src], todo, n, region)
        target[todo] = carried[todo]
    return target


def segment_phases(
    source,
    preprocess,
    case: LoadedCase,
    ed_labels: np.ndarray,
    es_labels: np.ndarray | None,
    cfg: TrainConfig,
    device: str = "auto",
    cleanup: bool = DEFAULT_CLEANUP,
    localise: bool = True,
    propagate: bool = True,
    background: tuple[set[int], set[int]] = (set(), set()),
    fuse: bool = True,
):
    """Train on what is painted in ED and ES, segment both; ``(ED, ES predictions, s)``.

    The heart region comes from the painted slices. With ``propagate`` each phase is
    segmented by its own segmenter, trained on everything painted plus the other
    phase's painted slices carried onto it by registration (what a painted slice says
    about the target phase), and (with ``fuse``) a phase whose other phase was painted is
    predicted fused with that phase's prediction carried onto it
    (:func:`~napari_pix2rep.propagate.fuse_iter`), as the dock does; without
    ``propagate``, one segmenter trains on what is painted.
    ``background`` lists ED's and ES's background-only slices (flat indices).
    """
    t0 = time.perf_counter()
    labels = {"ED": ed_labels, "ES": np.zeros_like(ed_labels) if es_labels is None else es_labels}
    bg = {"ED": set(background[0]), "ES": set(background[1])}
    images = {"ED": (case.ed.data, case.ed.spacing), "ES": (case.es.data, case.es.spacing)}
    same_grid = case.ed.data.shape == case.es.data.shape
    region = None
    if localise:
        painted = (labels["ED"] > 0) | (labels["ES"] > 0) if same_grid else labels["ED"]
        region = locate_heart(case.ed.data, case.ed.spacing, annotation=painted)

    def train(targets: dict):
        used = [ph for ph in ("ED", "ES") if targets[ph].any() or bg[ph]]
        return train_segmenter(
            source,
            preprocess,
            [images[ph] for ph in used],
            [targets[ph] for ph in used],
            cfg,
            device=device,
            background_slices=[bg[ph] for ph in used],
        )

    if propagate and same_grid:
        k = len(cfg.classes)
        segs = {
            "ED": train({"ED": labels["ED"], "ES": labels["ES"]})
            if not labels["ES"].any()
            else train({"ED": _carry(case, "ES", labels, bg, k, region), "ES": labels["ES"]}),
            "ES": train({"ED": labels["ED"], "ES": _carry(case, "ED", labels, bg, k, region)}),
        }
    else:
        one = train(labels)
        segs = {"ED": one, "ES": one}
    train_s = time.perf_counter() - t0
    vols = {"ED": case.ed, "ES": case.es}
    raw = {  # each phase predicted once; fusion reuses the other phase's probabilities
        ph: predict_volume(segs[ph], v.data, v.spacing, device, cleanup=False, region=region)
        for ph, v in vols.items()
    }
    preds = []
    for ph, other in (("ED", "ES"), ("ES", "ED")):
        probs = raw[ph].probabilities
        if fuse and propagate and same_grid and labels[other].any():  # other phase painted
            source = [(vols[other].data, raw[other].probabilities)]
            preds.append(run_to_end(fuse_iter(probs, vols[ph].data, source, cleanup, region)))
        else:
            preds.append(label_probabilities(probs, cleanup, region))
    return preds[0], preds[1], train_s


def _lv_ef(ed: np.ndarray, es: np.ndarray, case: LoadedCase) -> float:
    """LV ejection fraction (%) of ED / ES label maps on the case's grids."""
    lv = [structure_volumes(m, v.spacing)["LV_ml"] for m, v in ((ed, case.ed), (es, case.es))]
    return ejection_fraction(*lv)


def few_slice(
    source,
    preprocess,
    cases: Sequence[LoadedCase],
    cfg: TrainConfig,
    device: str = "auto",
    cleanup: bool = DEFAULT_CLEANUP,
    k: int = 2,
    progress: Callable[[str], None] | None = None,
    localise: bool = True,
    propagate: bool = True,
    fuse: bool = True,
) -> list[dict]:
    """few-slice-acdc: one segmenter per case from k ED slices; DICE on the rest.

    See :func:`segment_phases` for ``localise``, ``propagate`` and ``fuse``.
    """
    rows = []
    for c in cases:
        given = few_slice_given(c.ed_gt.data, k)
        labels = np.zeros_like(c.ed_gt.data)
        labels[given] = c.ed_gt.data[given]
        t0 = time.perf_counter()
        ed, es, train_s = segment_phases(
            source,
            preprocess,
            c,
            labels,
            None,
            cfg,
            device,
            cleanup,
            localise,
            propagate,
            fuse=fuse,
        )
        seconds = time.perf_counter() - t0
        keep = np.ones(c.ed.data.shape, bool)
        keep[given] = False
        # EF as the user would read it: the painted slices keep what was painted
        ed_mask = np.where(keep, ed.labels, labels)
        ef = {
            "LV_EF": _lv_ef(ed_mask, es.labels, c),
            "LV_EF_truth": _lv_ef(c.ed_gt.data, c.es_gt.data, c),
        }
        for phase, pred, gt, mask in (("ED", ed, c.ed_gt, keep), ("ES", es, c.es_gt, None)):
            rows.append(
                {
                    "case": c.case.id,
                    "group": c.case.group,
                    "phase": phase,
                    "given": given,
                    "train_s": round(train_s, 2),
                    "seconds": round(seconds, 2),
                    **score(pred.labels, gt.data, mask),
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


def annotation_loop(
    source,
    preprocess,
    cases: Sequence[LoadedCase],
    cfg: TrainConfig,
    rounds: int = 3,
    device: str = "auto",
    cleanup: bool = DEFAULT_CLEANUP,
    localise: bool = True,
    propagate: bool = True,
    progress: Callable[[str], None] | None = None,
    fuse: bool = True,
) -> list[dict]:
    """The annotation loop (module docstring): one row per case and round.

    Each row has ``painted`` (number of painted slices), ``ED`` / ``ES`` / ``mean`` DICE
    over the unpainted slices (RV/MYO/LV mean), and the slice added after it.
    """
    rows = []
    for c in cases:
        truth = {"ED": c.ed_gt.data, "ES": c.es_gt.data}
        painted = {"ED": set(few_slice_given(truth["ED"], 2)), "ES": set()}
        for r in range(rounds + 1):
            labels = {}
            for ph, gt in truth.items():
                labels[ph] = np.zeros_like(gt)
                idx = sorted(painted[ph])
                labels[ph][idx] = gt[idx]
            background = tuple({z for z in painted[ph] if not truth[ph][z].any()} for ph in truth)
            t0 = time.perf_counter()
            ed, es, train_s = segment_phases(
                source,
                preprocess,
                c,
                labels["ED"],
                labels["ES"],
                cfg,
                device,
                cleanup,
                localise,
                propagate,
                background,
                fuse,
            )
            row = {
                "case": c.case.id,
                "round": r,
                "painted": 2 + r,
                "train_s": round(train_s, 2),
                "seconds": round(time.perf_counter() - t0, 2),
            }
            worst = (-1, "", -1)
            for ph, pred in (("ED", ed.labels), ("ES", es.labels)):
                keep = np.ones(truth[ph].shape, bool)
                keep[sorted(painted[ph])] = False
                row[ph] = score(pred, truth[ph], keep)["mean"]
                for z in np.flatnonzero(keep.any(axis=(1, 2))):
                    wrong = int((pred[z] != truth[ph][z]).sum())
                    worst = max(worst, (wrong, ph, int(z)))
            row["mean"] = float(np.nanmean([row["ED"], row["ES"]]))
            if worst[0] > 0 and r < rounds:
                painted[worst[1]].add(worst[2])
                row["next"] = [worst[1], worst[2]]
            rows.append(row)
            if progress is not None:
                m, e, s = row["mean"], row["ED"], row["ES"]
                progress(f"{c.case.id} round {r}: {m:.3f} (ED {e:.3f}, ES {s:.3f})")
    return rows


def summarise(rows: Sequence[dict]) -> dict[str, float]:
    """Mean DICE per class and overall over rows (NaN-aware)."""
    out = {}
    for k in (*CLASS_NAMES, "mean"):
        v = np.asarray([r[k] for r in rows], dtype=float)
        out[k] = float(v[np.isfinite(v)].mean()) if np.isfinite(v).any() else float("nan")
    return out
