"""Another scanner: a model from one labelled ACDC patient segments the Sunnybrook series.

The Sunnybrook series (GE Signa HDx 1.5 T, 20 phases x 12 slices, oblique; ACDC is
Siemens) is read as the DICOM folder a user would open; the segmenter is trained on one
ACDC patient (ED + ES, every slice: the one-shot draws of one_shot.py) and segments the
contoured phases, on the heart region found from the cine's motion (no labels). DICE on
the contoured slices only: LV cavity at ED and ES, myocardium at ED (the ES images have
only an endocardial contour; these contours have no RV, so an RV prediction counts as
background).

    python benchmarks/other_scanner.py --data ../shared/data/acdc \\
        --series ../shared/data/sunnybrook_dicom/SCD0000101 --methods linear,finetune
"""

from __future__ import annotations

import time

import numpy as np
from common import (
    REPO,
    add_localise_flag,
    draw_label_sets,
    load_cases,
    load_split,
    mean_spread,
    parser,
    pix2rep_backbone,
    table,
    tagged,
    train_configs,
    write_results,
)

from napari_pix2rep.evaluation.protocols import train_on_cases
from napari_pix2rep.io.dicom import read_dicom
from napari_pix2rep.io.sunnybrook import LV, MYO, contoured_slices
from napari_pix2rep.measure.metrics import dice_per_class
from napari_pix2rep.segment.localise import locate_heart
from napari_pix2rep.segment.predict import predict_volume

SERIES = REPO.parent / "shared" / "data" / "sunnybrook_dicom" / "SCD0000101"


def score(vol, contoured, seg, device, localise: bool) -> dict[str, float]:
    """LV (ED and ES) and MYO (ED) DICE on the contoured slices; their mean."""
    region = locate_heart(vol.data, vol.spacing) if localise else None
    out: dict[str, list[float]] = {"LV": [], "MYO": []}
    for frame in sorted({c.frame for c in contoured}):
        mine = [c for c in contoured if c.frame == frame]
        pred = predict_volume(seg, vol.data[frame], vol.spacing[1:], device, region=region)
        p = np.stack([pred.labels[c.slice] for c in mine])
        g = np.stack([c.labels for c in mine])
        out["LV"].append(dice_per_class(p, g, [LV])[LV])
        if all(c.has_myocardium for c in mine):
            out["MYO"].append(dice_per_class(p, g, [MYO])[MYO])
    lv, myo = float(np.mean(out["LV"])), float(np.mean(out["MYO"]))
    return {"LV": lv, "MYO": myo, "mean": (lv + myo) / 2, "LV per phase": out["LV"]}


def main() -> None:
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--series", default=str(SERIES), help="The Sunnybrook DICOM series folder.")
    p.add_argument("--methods", default="linear,finetune")
    p.add_argument("--draws", type=int, default=3)
    add_localise_flag(p, "the cine's motion")
    args = p.parse_args()
    vol = read_dicom(args.series)
    contoured = contoured_slices(args.series, vol)
    backbone, pre, model_name = pix2rep_backbone(args)
    recipes = train_configs(args.quick)
    pool, _ = load_split(args.data, args.quick)
    runs = []
    for d, label_cases in enumerate(draw_label_sets(pool, 1, args.draws, args.seed)):
        labelled = load_cases(label_cases)
        for method in args.methods.split(","):
            recipe = recipes[method]
            recipe.seed = args.seed + d
            t0 = time.perf_counter()
            seg, train_s = train_on_cases(backbone, pre, labelled, recipe, args.device)
            s = score(vol, contoured, seg, args.device, args.localise)
            runs.append(
                {
                    "method": f"pix2rep-{method}",
                    "draw": d,
                    "labelled": [c.id for c in label_cases],
                    "train_s": train_s,
                    "total_s": time.perf_counter() - t0,
                    "summary": s,
                }
            )
            print(f"{method} draw {d} {label_cases[0].id}: {s}", flush=True)
    payload = {"model": model_name, "series": str(args.series), "runs": runs}
    write_results(args.out, tagged("other_scanner", args.tag), payload, report(payload))


def report(payload: dict) -> str:
    methods = list(dict.fromkeys(r["method"] for r in payload["runs"]))
    rows = []
    for m in methods:
        mine = [r for r in payload["runs"] if r["method"] == m]
        cells = [mean_spread([r["summary"][k] for r in mine]) for k in ("LV", "MYO", "mean")]
        rows.append([m, str(len(mine)), *cells, f"{np.mean([r['train_s'] for r in mine]):.0f}"])
    return (
        "Another scanner (Sunnybrook SCD0000101, GE 1.5 T), model from one labelled ACDC "
        f"patient, backbone `{payload['model']}`: DICE on the contoured slices (LV at ED "
        "and ES, MYO at ED); mean ± std over draws.\n\n"
        + table(["method", "draws", "LV", "MYO", "mean", "train s"], rows)
        + "\n"
    )


if __name__ == "__main__":
    main()
