"""Linear-probe DICE against pretraining steps: is longer pretraining worth it?

Each backbone (pretraining snapshots ``--snapshot-every`` writes, and a random
initialisation as step 0) gets the one-shot linear probe of one_shot.py from one labelled
patient (three draws, different pathology groups) and is scored on every other
validation patient (ED + ES), so a point costs about a minute on a CPU.

    python benchmarks/probe_vs_steps.py --data ../shared/data/acdc \\
        --snapshots runs/pt_infonce_step2000.pt,runs/pt_infonce_step6000.pt,...
"""

from __future__ import annotations

import numpy as np
from common import (
    CLASS_NAMES,
    draw_label_sets,
    load_cases,
    load_split,
    mean_spread,
    parser,
    random_backbone,
    table,
    tagged,
    train_configs,
    write_results,
)

from napari_pix2rep.evaluation.protocols import evaluate, summarise, train_on_cases
from napari_pix2rep.model.segmenter import load_backbone


def main() -> None:
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--snapshots", required=True, help="Comma-separated backbone files.")
    p.add_argument("--draws", type=int, default=3)
    args = p.parse_args()
    pool, val_cases = load_split(args.data, args.quick)
    val = load_cases(val_cases[::2])
    label_sets = [load_cases(s) for s in draw_label_sets(pool, 1, args.draws, args.seed)]
    recipe = train_configs(args.quick)["linear"]
    points = []
    backbones = []
    for f in args.snapshots.split(","):
        net, pre, meta = load_backbone(f)
        backbones.append((f, int(meta["steps"]), net, pre))
    _, _, first, pre = backbones[0]
    backbones.insert(0, ("random init", 0, random_backbone(first, args.seed), pre))
    for name, steps, net, pre in backbones:
        scores = []
        for d, labelled in enumerate(label_sets):
            recipe.seed = args.seed + d
            seg, _ = train_on_cases(net, pre, labelled, recipe, args.device)
            scores.append(summarise(evaluate(seg, val, args.device)))
        points.append({"backbone": name, "steps": steps, "draws": scores})
        print(f"{name} ({steps} steps): {np.mean([s['mean'] for s in scores]):.3f}", flush=True)
    lines = [
        [
            str(pt["steps"]),
            f"`{pt['backbone']}`",
            *(mean_spread([s[k] for s in pt["draws"]]) for k in (*CLASS_NAMES, "mean")),
        ]
        for pt in points
    ]
    md = (
        f"One-shot linear probe against pretraining steps: {args.draws} draws of one "
        f"labelled patient ({', '.join(c.case.id for s in label_sets for c in s)}), "
        f"{len(val)} validation patients (ED + ES); mean ± std over draws.\n\n"
        + table(["pretraining steps", "backbone", *CLASS_NAMES, "mean"], lines)
        + "\n"
    )
    write_results(
        args.out,
        tagged("probe_vs_steps", args.tag),
        {"validation": [c.case.id for c in val], "points": points},
        md,
    )


if __name__ == "__main__":
    main()
