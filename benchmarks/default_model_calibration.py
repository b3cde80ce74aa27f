"""How the default model's prediction is finished: the prior correction and mirror averaging.

Tunes the two prediction-time settings the shipped file carries
(:func:`napari_pix2rep.segment.supervised.shipped_segmenter`) on the validation patients
(ids multiple of 5): the scale ``a`` of the class-prior correction (``-a log w_k`` added to
the class scores, ``w`` the training loss's class weights, computed from the training
patients) and test-time mirroring (none; left-right, as shipped; left-right and
up-down). Zero clicks, every ED and ES slice, the connected-heart clean-up on; reported
for all 20 patients and for the first 10 (005 ... 050, which choose) and the other 10
(which check). ``--segmenter`` must be a file shipped **without** correction
(``train_default_model.py --ship FILE --prior-correction 0 --no-flip-average``).

    python benchmarks/default_model_calibration.py --data ../shared/data/acdc \
        --segmenter runs/raw.pt --out docs/results
"""

from __future__ import annotations

import time

import numpy as np
from common import load_split, parser, table, tagged, write_results

from napari_pix2rep.measure.metrics import dice_per_class
from napari_pix2rep.model.segmenter import Segmenter
from napari_pix2rep.segment.predict import label_probabilities, predict_volume
from napari_pix2rep.segment.supervised import class_weights_of, pack_cases, prior_offsets

#: Mirrorings compared: the axes (of ``(z, y, x)``) each extra pass mirrors.
MIRRORS = {
    "none": [()],
    "left-right": [(), (2,)],
    "left-right + up-down": [(), (2,), (1,), (1, 2)],
}


def _probabilities(seg: Segmenter, data: np.ndarray, spacing, device) -> dict:
    """Class probabilities ``(K, z, y, x)`` of ``data`` and of each mirror, mirrored back."""
    out = {}
    for axes in {a for passes in MIRRORS.values() for a in passes}:
        x = np.ascontiguousarray(np.flip(data, axes)) if axes else data
        p = predict_volume(seg, x, spacing, device, cleanup=False, flip_average=False)
        p = p.probabilities.astype(np.float32)
        out[axes] = np.flip(p, tuple(a + 1 for a in axes)) if axes else p
    return out


def _ef(ed: float, es: float) -> float:
    return 100.0 * (ed - es) / max(ed, 1.0)


def main() -> int:
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--segmenter", required=True, help="a default model shipped uncorrected")
    p.add_argument("--scales", default="0,0.5,0.75,1", help="prior-correction scales")
    args = p.parse_args()
    scales = [float(s) for s in args.scales.split(",")]
    seg = Segmenter.from_file(args.segmenter)
    if seg.flip_average or any((seg.meta.get("prior_correction") or {}).get("offsets", [0])):
        raise SystemExit("Give a file shipped with --prior-correction 0 --no-flip-average.")
    pool, val = load_split(args.data, args.quick)
    weights = class_weights_of(pack_cases(pool, seg), seg.n_classes)
    rows: dict[str, list[dict]] = {}
    t0 = time.perf_counter()
    for case in val:
        vols = case.load()
        volumes: dict[str, dict] = {}
        for phase in ("ed", "es"):
            img, gt = vols[phase], np.asarray(vols[f"{phase}_gt"].data).astype(np.uint8)
            probs = _probabilities(seg, np.asarray(img.data), img.spacing, args.device)
            for mirror, passes in MIRRORS.items():
                mean = np.mean([probs[a] for a in passes], axis=0)
                scores = np.log(np.clip(mean, 1e-6, 1.0))
                for a in scales:
                    off = prior_offsets(weights, a).numpy()[:, None, None, None]
                    lab = label_probabilities(scores + off).labels
                    key = f"{mirror}|{a:g}"
                    d = dice_per_class(lab, gt, [1, 2, 3])
                    rows.setdefault(key, []).append(
                        {"case": case.id, "number": case.number, "phase": phase.upper()}
                        | {name: d[c] for c, name in ((1, "RV"), (2, "MYO"), (3, "LV"))}
                    )
                    v = volumes.setdefault(key, {})
                    v[phase] = [(lab == c).sum() for c in (1, 3)] + [
                        (gt == c).sum() for c in (1, 3)
                    ]
        for key, v in volumes.items():
            ed, es = v["ed"], v["es"]
            rows[key][-1] |= {
                "RV_EF_error": abs(_ef(ed[0], es[0]) - _ef(ed[2], es[2])),
                "LV_EF_error": abs(_ef(ed[1], es[1]) - _ef(ed[3], es[3])),
            }
        print(f"{case.id} {time.perf_counter() - t0:.0f} s", flush=True)
    summary, lines = {}, []
    for key, rs in rows.items():
        mirror, a = key.split("|")
        dice = np.array([[r["RV"], r["MYO"], r["LV"]] for r in rs])
        first = np.array([r["number"] <= 50 for r in rs])
        es = np.array([r["phase"] == "ES" for r in rs])
        ef = [r for r in rs if "RV_EF_error" in r]
        s = {
            "mean": dice.mean(),
            "first10": dice[first].mean(),
            "other10": dice[~first].mean(),
            "ED": dice[~es].mean(),
            "ES": dice[es].mean(),
            "RV_ES": dice[es, 0].mean(),
            "RV_EF_error": float(np.mean([r["RV_EF_error"] for r in ef])),
            "LV_EF_error": float(np.mean([r["LV_EF_error"] for r in ef])),
        }
        summary[key] = s
        lines.append(
            [mirror, a]
            + [f"{s[k]:.3f}" for k in ("mean", "first10", "other10", "ED", "ES", "RV_ES")]
            + [f"{s['RV_EF_error']:.1f}", f"{s['LV_EF_error']:.1f}"]
        )
    md = (
        f"Prior correction and mirroring of `{args.segmenter}` on {len(val)} validation "
        f"patients, zero clicks (class weights {[round(float(w), 4) for w in weights]}).\n\n"
        + table(
            [
                "mirroring",
                "scale",
                "mean",
                "first 10",
                "other 10",
                "ED",
                "ES",
                "RV at ES",
                "RV EF err",
                "LV EF err",
            ],
            lines,
        )
        + "\n"
    )
    write_results(
        args.out,
        tagged("default_model_calibration", args.tag),
        {
            "segmenter": args.segmenter,
            "weights": weights.tolist(),
            "summary": summary,
            "rows": rows,
        },
        md,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
