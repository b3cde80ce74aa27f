"""``pix2rep evaluate`` (DICE against truth) and ``pix2rep measure`` (volumes, EF, mass)."""

from __future__ import annotations

import argparse
import sys

from .common import CliError, add_json, sigterm_interrupts

#: Said when the ES segmentation has the larger LV (the dock's note on the same choice).
ES_LARGER = "the ES segmentation has a larger LV than the ED one: check the order (ED first)."


# -- evaluate ----------------------------------------------------------------------------
def add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="3D DICE per class of predictions against truth.")
    p.add_argument("--pred", action="append", required=True, metavar="P.nii.gz")
    p.add_argument("--gt", action="append", required=True, metavar="G.nii.gz")
    p.add_argument(
        "--classes", default="RV,MYO,LV", help="Names of labels 1, 2, ... (default RV,MYO,LV)."
    )
    add_json(p, "Print JSON instead of a table.")
    p.set_defaults(func=cmd_evaluate)


@sigterm_interrupts
def cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    from ..classes import parse_classes
    from ..metrics import dice_per_class
    from ..nifti import read_nifti

    if len(args.pred) != len(args.gt):
        raise CliError("Give one --gt for every --pred.")
    names = [c.strip() for c in args.classes.split(",") if c.strip()]
    if not names:
        raise CliError("Give the names of labels 1, 2, ... with --classes (e.g. RV,MYO,LV).")
    names = list(parse_classes(["background", *names])[1:])  # refuses a repeated name
    rows = []
    for p, g in zip(args.pred, args.gt):
        pred, gt = read_nifti(p, kind="labels"), read_nifti(g, kind="labels")
        if pred.shape != gt.shape:
            raise CliError(f"{p} {pred.shape} and {g} {gt.shape} are not on the same grid.")
        d = dice_per_class(pred.data, gt.data, range(1, len(names) + 1))
        rows.append({"pred": p, "gt": g, **{n: d[i + 1] for i, n in enumerate(names)}})
    mean = {n: float(np.nanmean([r[n] for r in rows])) for n in names}
    mean["mean"] = float(np.nanmean(list(mean.values())))
    if args.json:
        print(json.dumps({"cases": rows, "mean": mean}, indent=2))
        return 0
    print("\t".join(["prediction", *names, "mean"]))
    for r in rows:
        vals = [r[n] for n in names]
        print("\t".join([r["pred"], *(f"{v:.4f}" for v in vals), f"{np.nanmean(vals):.4f}"]))
    print("\t".join(["MEAN", *(f"{mean[n]:.4f}" for n in names), f"{mean['mean']:.4f}"]))
    return 0


# -- measure -----------------------------------------------------------------------------
def add_measure(sub) -> None:
    p = sub.add_parser("measure", help="LV/RV volumes, ejection fractions, myocardial mass.")
    p.add_argument(
        "segs",
        nargs="+",
        metavar="SEG.nii.gz",
        help="One 4D segmentation, or the ED and then the ES 3D segmentation.",
    )
    add_json(p)
    p.add_argument("--ed", type=int, metavar="N", help="4D: end-diastolic frame (0-based).")
    p.add_argument("--es", type=int, metavar="N", help="4D: end-systolic frame (0-based).")
    p.set_defaults(func=cmd_measure)


@sigterm_interrupts
def cmd_measure(args: argparse.Namespace) -> int:
    import json

    from ..images import read_image
    from ..metrics import cardiac_measures, cine_measures, structure_volumes, volume_curve

    vols = [read_image(s, kind="labels") for s in args.segs]
    out: dict = {}
    given = (args.ed, args.es) != (None, None)
    if given and not (len(vols) == 1 and vols[0].is_4d):
        raise CliError("--ed and --es pick frames of one 4D segmentation.")
    if len(vols) == 1 and vols[0].is_4d:
        v = vols[0]
        spatial = v.spacing[1:]
        out["measures"] = cine_measures(v.data, spatial, ed=args.ed, es=args.es).to_dict()
        out["curve"] = volume_curve(v.data, spatial)
    elif len(vols) == 2 and not any(v.is_4d for v in vols):
        ed, es = vols  # as given, like the dock's ED and ES choices
        if ed.shape != es.shape:
            raise CliError("The ED and ES segmentations are not on the same grid.")
        m = cardiac_measures(ed.data, es.data, ed.spacing)
        if m.LV_ESV > m.LV_EDV:
            print(f"pix2rep measure: note: {ES_LARGER}", file=sys.stderr)
        out["measures"] = m.to_dict()
        out["ed"], out["es"] = ed.path, es.path
    elif len(vols) == 1:
        out["volumes"] = structure_volumes(vols[0].data, vols[0].spacing)
    else:
        raise CliError("Give one 4D segmentation, or two 3D ones (ED and ES).")
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    if "measures" in out:
        m = out["measures"]
        if "ed" in out:
            print(f"ED: {out['ed']}\nES: {out['es']}")
        elif m.get("ed_frame") is not None:
            how = "given" if given else "largest and smallest LV volume"
            print(f"ED frame {m['ed_frame']}, ES frame {m['es_frame']} ({how})")
        print(f"LV  EDV {m['LV_EDV']:.1f} mL  ESV {m['LV_ESV']:.1f} mL  EF {m['LV_EF']:.1f} %")
        print(f"RV  EDV {m['RV_EDV']:.1f} mL  ESV {m['RV_ESV']:.1f} mL  EF {m['RV_EF']:.1f} %")
        print(f"Myocardial mass {m['MYO_mass']:.1f} g")
        for t, c in enumerate(out.get("curve", [])):
            print(f"frame {t}: LV {c['LV_ml']:.1f} mL, RV {c['RV_ml']:.1f} mL")
    else:
        v = out["volumes"]
        print(f"LV {v['LV_ml']:.1f} mL, RV {v['RV_ml']:.1f} mL, MYO {v['MYO_ml']:.1f} mL")
    return 0
