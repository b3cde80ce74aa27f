"""Fine-tuning convergence: DICE against steps, Pix2Rep init versus from scratch.

One labelled patient (ED + ES, all slices), the same recipe as one_shot.py without
early stopping; every ``--every`` steps the model segments the validation patients
(ED + ES). Writes a plot ``convergence.png`` next to the tables.

    python benchmarks/convergence.py --data ../shared/data/acdc --steps 400 --every 50
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

from common import (
    draw_label_sets,
    load_cases,
    load_split,
    parser,
    pix2rep_backbone,
    random_backbone,
    spread_subset,
    table,
    tagged,
    train_configs,
    write_results,
)

from napari_pix2rep.annotate.annotations import collect_annotations
from napari_pix2rep.evaluation.protocols import evaluate, summarise
from napari_pix2rep.model.device import resolve_device
from napari_pix2rep.model.segmenter import Segmenter
from napari_pix2rep.segment.finetune import fine_tune_iter
from napari_pix2rep.segment.probe import training_slices


def curve(net, pre, labelled, val, cfg, every, device) -> list[tuple[int, float]]:
    dev = resolve_device(device)
    images = [(v.data, v.spacing) for c in labelled for v in (c.ed, c.es)]
    labels = [g.data for c in labelled for g in (c.ed_gt, c.es_gt)]
    ann = collect_annotations([(i, lab) for (i, _), lab in zip(images, labels)])
    seg = Segmenter(copy.deepcopy(net), cfg.classes, pre).to(dev)
    slices = training_slices(images, ann, pre, seg.backbone.config.stride)
    points = []
    for p in fine_tune_iter(seg, slices, cfg, dev):
        at_start = p.stage == "probe" and p.step == p.total
        if at_start or (p.stage == "finetune" and p.step % every == 0):
            step = 0 if at_start else p.step
            score = summarise(evaluate(seg, val, device))["mean"]
            points.append((step, score))
            print(f"step {step}: mean DICE {score:.3f}", flush=True)
    return points


def main() -> None:
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--every", type=int, default=50)
    p.add_argument("--val-patients", type=int, default=6, help="Validation subset size.")
    args = p.parse_args()
    steps, every = (6, 3) if args.quick else (args.steps, args.every)
    backbone, pre, model_name = pix2rep_backbone(args)
    pool, val_cases = load_split(args.data, args.quick)
    val = load_cases(spread_subset(val_cases, args.val_patients))
    labelled = load_cases(draw_label_sets(pool, 1, 1, args.seed)[0])
    recipes = train_configs(args.quick)
    no_stop = {"ft_steps": steps, "min_slices_for_val": 10**6}
    curves = {
        "pix2rep-finetune": curve(
            backbone,
            pre,
            labelled,
            val,
            replace(recipes["finetune"], **no_stop),
            every,
            args.device,
        ),
        "scratch": curve(
            random_backbone(backbone, args.seed),
            pre,
            labelled,
            val,
            replace(recipes["scratch"], **no_stop),
            every,
            args.device,
        ),
    }
    rows = [
        [str(s), *(f"{dict(c).get(s, float('nan')):.3f}" for c in curves.values())]
        for s, _ in curves["scratch"]
    ]
    name = tagged("convergence", args.tag)
    md = (
        f"Fine-tuning convergence from 1 labelled patient ({labelled[0].case.id}), mean "
        f"DICE on {len(val)} validation patients (ED + ES), backbone `{model_name}`.\n\n"
        + table(["step", *curves], rows)
        + f"\n\n![convergence]({name}.png)\n"
    )
    write_results(args.out, name, {"model": model_name, "curves": curves}, md)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, pts in curves.items():
        ax.plot(*zip(*pts), marker="o", label=method)
    ax.set_xlabel("fine-tuning step")
    ax.set_ylabel("mean DICE (validation)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(Path(args.out) / f"{name}.png", dpi=100)


if __name__ == "__main__":
    main()
