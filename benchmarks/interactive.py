"""The annotation loop (issue 9): does every correction make the masks better?

For each validation patient (number a multiple of 5): the two few-slice ED slices are
painted (expert truth); Segment (linear probe) both phases; then each round the
worst-segmented unpainted slice (most wrong voxels, ED or ES) gets its expert mask -- a
perfect correction, possibly background only -- and Segment runs again. Score: 3D DICE
on the slices nobody painted, after 2, 3, 4, 5 painted slices.

    python benchmarks/interactive.py --data ../shared/data/acdc [--rounds 3]
        [--no-localise] [--no-propagate] [--no-fuse] [--registration G,S,B]
        [--fuse-weight W] [--patients N]
"""

from __future__ import annotations

import numpy as np
from common import (
    add_pipeline_flags,
    describe_pipeline,
    load_cases,
    load_split,
    parser,
    pipeline_settings,
    pix2rep_backbone,
    spread_subset,
    table,
    tagged,
    train_configs,
    write_results,
)

from napari_pix2rep.evaluation.protocols import annotation_loop


def main() -> None:
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="Corrections after the first 2.")
    p.add_argument(
        "--patients", type=int, default=0, help="About N, spread over the groups (0 = all 20)."
    )
    add_pipeline_flags(p)
    args = p.parse_args()
    backbone, pre, model_name = pix2rep_backbone(args)
    _, val_cases = load_split(args.data, args.quick)
    val_cases = spread_subset(val_cases, args.patients)
    settings = pipeline_settings(args, train_configs(args.quick)["linear"])
    rows = annotation_loop(
        (backbone, pre),
        load_cases(val_cases),
        settings,
        rounds=args.rounds,
        device=args.device,
        progress=lambda m: print(m, flush=True),
    )
    lines, worse = [], []
    for r in range(args.rounds + 1):
        mine = [x for x in rows if x["round"] == r]
        lines.append(
            [
                str(2 + r),
                *(f"{np.nanmean([x[k] for x in mine]):.3f}" for k in ("ED", "ES", "mean")),
                f"{min(x['mean'] for x in mine):.3f}",
                f"{np.mean([x['seconds'] for x in mine]):.1f}",
            ]
        )
        if r:
            prev = {x["case"]: x["mean"] for x in rows if x["round"] == r - 1}
            worse.append(sum(x["mean"] < prev[x["case"]] - 1e-9 for x in mine))
    md = (
        f"annotation loop on {len(val_cases)} validation patients, backbone `{model_name}`, "
        f"{describe_pipeline(settings)}: "
        "DICE on the slices nobody painted by the last round (the same slices every round); "
        "seconds to train and predict both phases.\n\n"
        + table(["painted slices", "ED", "ES", "mean", "worst patient", "s / round"], lines)
        + "\n\npatients whose mean DICE dropped after a correction, per round: "
        + ", ".join(str(w) for w in worse)
        + "\n"
    )
    payload = {"model": model_name, "settings": settings.to_dict(), "rows": rows}
    write_results(args.out, tagged("interactive", args.tag), payload, md)


if __name__ == "__main__":
    main()
