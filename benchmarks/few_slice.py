"""few-slice-acdc (DESIGN.md): per held-out patient, 2 annotated ED slices -> the rest.

For each validation patient (number a multiple of 5) the truth of two ED slices (the
LV-containing slices at positions round(n/3) and round(2n/3)) trains a segmenter; it
then segments the other ED slices and the whole ES volume (DICE on everything not
given). The clinician's loop in the dock, measured.

    python benchmarks/few_slice.py --data ../shared/data/acdc [--modes linear,finetune]
        [--no-localise] [--no-propagate] [--no-fuse] [--registration G,S,B]
        [--fuse-weight W] [--patients N] [--probe-head linear|hypercolumn|...]
        [--probe-lr LR] [--probe-steps N]
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
from common import (
    CLASS_NAMES,
    add_pipeline_flags,
    describe_pipeline,
    load_cases,
    load_split,
    mean_spread,
    parser,
    pipeline_settings,
    pix2rep_backbone,
    random_backbone,
    spread_subset,
    table,
    tagged,
    train_configs,
    write_results,
)

from napari_pix2rep.core.choices import PROBE_HEADS
from napari_pix2rep.evaluation.protocols import few_slice, summarise


def main() -> None:
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--modes", default="linear", help="linear,finetune (slow).")
    p.add_argument(
        "--baseline",
        action="store_true",
        help="Also a linear probe on a randomly initialised backbone.",
    )
    p.add_argument(
        "--cleanup",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Keep the heart's largest 3D components (the default).",
    )
    p.add_argument(
        "--patients", type=int, default=0, help="About N, spread over the groups (0 = all 20)."
    )
    p.add_argument(
        "--probe-head",
        choices=PROBE_HEADS,
        default=None,
        help="What the linear probe reads (default: TrainConfig's, the shipped one).",
    )
    p.add_argument("--probe-lr", type=float, default=None, help="The probe's Adam rate.")
    p.add_argument("--probe-steps", type=int, default=None, help="The probe's Adam steps.")
    add_pipeline_flags(p)
    args = p.parse_args()
    backbone, pre, model_name = pix2rep_backbone(args)
    _, val_cases = load_split(args.data, args.quick)
    val = load_cases(spread_subset(val_cases, args.patients))
    recipes = train_configs(args.quick)
    probe = {
        k: v
        for k, v in (
            ("probe_head", args.probe_head),
            ("probe_lr", args.probe_lr),
            ("probe_steps", args.probe_steps),
        )
        if v is not None
    }
    recipes = {m: replace(r, **probe) for m, r in recipes.items()}
    runs = {}
    todo = [(f"pix2rep-{m}", backbone, recipes[m]) for m in args.modes.split(",")]
    if args.baseline:
        todo.append(("random-linear", random_backbone(backbone, args.seed), recipes["linear"]))
    for name, net, recipe in todo:
        settings = pipeline_settings(args, recipe)
        rows = few_slice(
            (net, pre),
            val,
            settings,
            args.device,
            progress=lambda m, n=name: print(f"{n} {m}", flush=True),
        )
        runs[name] = rows
    header = ["method", "phase", *CLASS_NAMES, "mean", "train s / patient", "s / patient"]
    lines = []
    for name, rows in runs.items():
        for phase in ("ED", "ES", "both"):
            mine = [r for r in rows if phase == "both" or r["phase"] == phase]
            s = summarise(mine)
            ed = [r for r in mine if r["phase"] == "ED"]
            per = sum(r["train_s"] for r in ed) / max(1, len(val))
            total = sum(r["seconds"] for r in ed) / max(1, len(val))
            lines.append(
                [
                    name,
                    phase,
                    *(f"{s[k]:.3f}" for k in (*CLASS_NAMES, "mean")),
                    f"{per:.1f}",
                    f"{total:.1f}",
                ]
            )
    spread = {n: mean_spread([r["mean"] for r in rows]) for n, rows in runs.items()}
    ef_lines = []
    for name, rows in runs.items():
        err = np.array([abs(r["LV_EF"] - r["LV_EF_truth"]) for r in rows if r["phase"] == "ED"])
        ef_lines.append(
            [name, f"{np.nanmean(err):.1f}", f"{np.nanmax(err):.1f}", f"{int((err <= 5).sum())}"]
        )
    md = (
        f"few-slice-acdc on {len(val)} validation patients, backbone `{model_name}`: "
        "2 given ED slices per patient, DICE on the other ED slices and all of ES "
        f"({describe_pipeline(settings)}).\n\n"
        + table(header, lines)
        + "\n\nper-volume mean DICE, mean ± std over volumes: "
        + ", ".join(f"{n} {v}" for n, v in spread.items())
        + f"\n\nLV ejection fraction from the masks (painted slices as painted), {len(val)} "
        "patients:\n\n"
        + table(["method", "mean |error| (points)", "max", "within 5 points"], ef_lines)
        + "\n"
    )
    payload = {"model": model_name, "settings": settings.to_dict(), "runs": runs}
    write_results(args.out, tagged("few_slice", args.tag), payload, md)


if __name__ == "__main__":
    main()
