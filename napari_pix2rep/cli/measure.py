"""``pix2rep evaluate`` (DICE against truth) and ``pix2rep measure`` (volumes, EF, mass)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from napari_pix2rep.cli.common import CliError, add_json, sigterm_interrupts

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

    from napari_pix2rep.core.classes import parse_classes
    from napari_pix2rep.io.nifti import read_nifti
    from napari_pix2rep.measure.metrics import dice_per_class

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
    p.add_argument(
        "--classes",
        metavar="NAMES",
        help="Names of labels 1, 2, ... (e.g. MYO,LV): which label is the RV, MYO and LV. "
        "Default: the class list the segmentation's header stores (pix2rep predict writes "
        "its model's), else RV,MYO,LV.",
    )
    p.set_defaults(func=cmd_measure)


def measure_classes(args: argparse.Namespace, vols) -> tuple[tuple[str, ...], str]:
    """The class list to measure with and where it came from: ``--classes``, else the one
    the segmentations' headers store (they must agree), else the ACDC convention."""
    from napari_pix2rep.core.classes import DEFAULT_CLASSES, parse_classes
    from napari_pix2rep.io.nifti import label_classes
    from napari_pix2rep.measure.metrics import structure_labels

    if args.classes is not None:
        classes = parse_classes(["background", *args.classes.split(",")])
        source = "--classes"
    else:
        stored = {label_classes(v.header) for v in vols} - {None}
        if len(stored) > 1:
            raise CliError(
                "The segmentations store different class lists "
                f"({'; '.join(','.join(c[1:]) for c in stored)}); give --classes."
            )
        classes, source = (
            (stored.pop(), "the segmentation's header") if stored else (DEFAULT_CLASSES, "default")
        )
    if all(v is None for v in structure_labels(classes).values()):
        raise CliError(
            f"None of RV, MYO and LV is among the classes {', '.join(classes[1:])} "
            f"({source}): give --classes naming labels 1, 2, ... (e.g. RV,MYO,LV)."
        )
    return classes, source


def same_grid(a, b) -> bool:
    """True when two volumes share shape, voxel spacing and affine (position)."""
    import numpy as np

    return (
        a.shape == b.shape
        and np.allclose(a.spacing, b.spacing, rtol=1e-3)
        and np.allclose(a.affine, b.affine, atol=1e-3)
    )


def json_safe(obj):
    """``obj`` with NaN and infinities as None, so that it prints as valid JSON."""
    import math

    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


def _num(value: float, fmt: str = ".1f") -> str:
    """``value`` formatted, or "n/a" for NaN (a measure that could not be made)."""
    return "n/a" if value is None or value != value else format(value, fmt)


@sigterm_interrupts
def cmd_measure(args: argparse.Namespace) -> int:
    import json

    from napari_pix2rep.io.images import read_image
    from napari_pix2rep.measure.metrics import (
        cine_measures,
        measure_warnings,
        structure_volumes,
        volume_curve,
    )

    vols = [read_image(s, kind="labels") for s in args.segs]
    out: dict = {}
    given = (args.ed, args.es) != (None, None)
    if given and not (len(vols) == 1 and vols[0].is_4d):
        raise CliError("--ed and --es pick frames of one 4D segmentation.")
    classes, source = measure_classes(args, vols)
    if not (vols[0].data > 0).any():
        raise CliError(f"{args.segs[0]} is empty (no label anywhere): nothing to measure.")
    warnings: list[str] = []
    if len(vols) == 1 and vols[0].is_4d:
        v = vols[0]
        spatial = v.spacing[1:]
        curve = volume_curve(v.data, spatial, classes)
        m = cine_measures(v.data, spatial, ed=args.ed, es=args.es, classes=classes)
        warnings = measure_warnings(m, curve)
        out["measures"], out["curve"] = m.to_dict(), curve
    elif len(vols) == 2 and not any(v.is_4d for v in vols):
        warnings = _ed_es(args, vols, classes, out)
    elif len(vols) == 1:
        out["volumes"] = structure_volumes(vols[0].data, vols[0].spacing, classes)
    else:
        raise CliError("Give one 4D segmentation, or two 3D ones (ED and ES).")
    out["classes"] = list(classes)
    for w in warnings:
        print(f"pix2rep measure: note: {w}", file=sys.stderr)
    if args.json:
        out["warnings"] = warnings
        print(json.dumps(json_safe(out), indent=2, allow_nan=False))
    else:
        _print_text(out, given)
    return 0


def _ed_es(args: argparse.Namespace, vols: list, classes: Sequence[str], out: dict) -> list[str]:
    """Measures of an ED and an ES segmentation, as given, into ``out``; the warnings."""
    import os

    import numpy as np

    from napari_pix2rep.measure.metrics import cardiac_measures, measure_warnings

    ed, es = vols  # as given, like the dock's ED and ES choices
    if not same_grid(ed, es):
        raise CliError(
            f"The ED and ES segmentations are not on the same grid ({args.segs[0]}: "
            f"{ed.shape}, voxels {' x '.join(f'{s:g}' for s in ed.spacing)} mm; "
            f"{args.segs[1]}: {es.shape}, voxels "
            f"{' x '.join(f'{s:g}' for s in es.spacing)} mm, or another position): "
            "give two phases of one stack."
        )
    m = cardiac_measures(ed.data, es.data, ed.spacing, classes)
    same = os.path.realpath(args.segs[0]) == os.path.realpath(args.segs[1]) or bool(
        np.array_equal(ed.data, es.data)
    )
    warnings = measure_warnings(m, same=same)
    if m.LV_ESV > m.LV_EDV:
        warnings.append(ES_LARGER)
    out["measures"] = m.to_dict()
    out["ed"], out["es"] = ed.path, es.path
    return warnings


def _print_text(out: dict, given: bool) -> None:
    """What ``pix2rep measure`` prints without ``--json``."""
    if "measures" in out:
        m = out["measures"]
        if "ed" in out:
            print(f"ED: {out['ed']}\nES: {out['es']}")
        elif m.get("ed_frame") is not None:
            how = "given" if given else "largest and smallest LV volume"
            print(f"ED frame {m['ed_frame']}, ES frame {m['es_frame']} ({how})")
        for s in ("LV", "RV"):
            print(
                f"{s}  EDV {_num(m[f'{s}_EDV'])} mL  ESV {_num(m[f'{s}_ESV'])} mL  "
                f"EF {_num(m[f'{s}_EF'])} %"
            )
        print(f"Myocardial mass {_num(m['MYO_mass'])} g")
        for t, c in enumerate(out.get("curve", [])):
            print(f"frame {t}: LV {_num(c['LV_ml'])} mL, RV {_num(c['RV_ml'])} mL")
    else:
        v = out["volumes"]
        print(f"LV {_num(v['LV_ml'])} mL, RV {_num(v['RV_ml'])} mL, MYO {_num(v['MYO_ml'])} mL")
