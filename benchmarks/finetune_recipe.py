"""Fine-tuning recipes compared on one-shot-acdc: DICE against steps, and the time taken.

Each named variant (``VARIANTS`` below: the shipped recipe's parts switched on one by
one) fine-tunes from the same probe on the same labelled patients (one per draw, ED + ES,
every slice) without early stopping; at each step of ``--eval-at`` the model segments
the validation patients (ED + ES, heart region from the ED/ES motion as in one_shot.py
``--localise``).

    python benchmarks/finetune_recipe.py --data ../shared/data/acdc \\
        --variants mild,heart,strong --eval-at 100,200,300 --val-patients 8
"""

from __future__ import annotations

import copy
import time
from dataclasses import replace

import numpy as np
from common import (
    draw_label_sets,
    load_cases,
    load_split,
    parser,
    pix2rep_backbone,
    spread_subset,
    table,
    tagged,
    write_results,
)

from napari_pix2rep.annotate.annotations import collect_annotations
from napari_pix2rep.evaluation.protocols import evaluate, summarise
from napari_pix2rep.model.device import resolve_device
from napari_pix2rep.model.segmenter import Segmenter
from napari_pix2rep.pretrain.augment import FINETUNE_AUGMENT, AugmentConfig
from napari_pix2rep.segment.finetune import fine_tune_iter
from napari_pix2rep.segment.probe import training_slices
from napari_pix2rep.segment.train_config import TrainConfig

#: The fine-tuning augmentation before this comparison: rotations within 30 degrees, zoom
#: in from 0.75, no mirror, milder intensity changes.
MILD_AUGMENT = AugmentConfig(
    noise_p=0.3,
    noise_std=0.2,
    blur_p=0.3,
    blur_sigma=1.0,
    gamma_p=0.5,
    gamma_log=0.2,
    bias_p=0.5,
    bias_coef=0.3,
    invert_p=0.0,
    rotation_deg=30.0,
    scale_min=0.75,
    scale_max=1.0,
    flip_p=0.0,
)
#: Strong augmentation: any in-plane rotation, zoom in and out, stronger intensity
#: changes (the shipped FINETUNE_AUGMENT without its mirror).
STRONG_AUGMENT = replace(FINETUNE_AUGMENT, flip_p=0.0)

#: What every variant shares: no early stopping, the recipe before this comparison.
BEFORE = {
    "min_slices_for_val": 10**6,
    "foreground_p": 0.0,
    "augment": MILD_AUGMENT,
    "elastic_px": 0.0,
    "lr_backbone": 5e-5,
}
STRONG = {"foreground_p": 0.67, "augment": STRONG_AUGMENT, "elastic_px": 3.0}

#: The recipes compared, each a change of :data:`BEFORE` (TrainConfig fields).
VARIANTS: dict[str, dict] = {
    # the recipe of docs/benchmarks.md's one-shot table, without early stopping
    "mild": BEFORE,
    # + crops centred on the heart two times in three
    "heart": {**BEFORE, "foreground_p": 0.67},
    # + strong spatial and intensity augmentation, elastic warp
    "strong": {**BEFORE, **STRONG},
    # + a 4x larger backbone learning rate
    "strong-lr": {**BEFORE, **STRONG, "lr_backbone": 2e-4},
    # + BatchNorm statistics trained (batch statistics) instead of frozen
    "strong-bn": {**BEFORE, **STRONG, "freeze_bn": False},
    # + mirrored crops
    "strong-flip": {**BEFORE, **STRONG, "augment": FINETUNE_AUGMENT},
    # mirrored crops and the larger backbone learning rate: the shipped recipe
    "strong-flip-lr": {**BEFORE, **STRONG, "augment": FINETUNE_AUGMENT, "lr_backbone": 2e-4},
}


def run(net, pre, labelled, val, cfg: TrainConfig, eval_at: list[int], device) -> dict:
    """Fine-tune on ``labelled``; mean DICE on ``val`` at each step of ``eval_at``."""
    dev = resolve_device(device)
    images = [(v.data, v.spacing) for c in labelled for v in (c.ed, c.es)]
    labels = [g.data for c in labelled for g in (c.ed_gt, c.es_gt)]
    ann = collect_annotations([(i, lab) for (i, _), lab in zip(images, labels)])
    seg = Segmenter(copy.deepcopy(net), cfg.classes, pre).to(dev)
    t0 = time.perf_counter()
    slices = training_slices(images, ann, pre, seg.backbone.config.stride)
    scores, train_s, paused = {}, {}, 0.0
    for p in fine_tune_iter(seg, slices, cfg, dev):
        if p.stage == "finetune" and p.step in eval_at:
            train_s[p.step] = time.perf_counter() - t0 - paused
            t1 = time.perf_counter()
            rows = evaluate(seg, val, device, localise=True)
            paused += time.perf_counter() - t1
            scores[p.step] = {"summary": summarise(rows), "rows": rows}
            print(f"  step {p.step}: {scores[p.step]['summary']['mean']:.3f}", flush=True)
    return {"scores": scores, "train_s": train_s}


def main() -> None:
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--variants", default="mild,heart,strong")
    p.add_argument("--eval-at", default="100,200,300", help="Steps to score at.")
    p.add_argument("--draws", type=int, default=3)
    p.add_argument(
        "--only-draws", default="", help="Comma-separated draw numbers to run (default: all)."
    )
    p.add_argument("--val-patients", type=int, default=8, help="Validation subset size.")
    args = p.parse_args()
    names = args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        p.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    eval_at = [6] if args.quick else [int(s) for s in args.eval_at.split(",")]
    quick = dict(probe_steps=20, crop=64, batch_size=2) if args.quick else {}
    backbone, pre, model_name = pix2rep_backbone(args)
    pool, val_cases = load_split(args.data, args.quick)
    val = load_cases(spread_subset(val_cases, args.val_patients))
    draws = draw_label_sets(pool, 1, 1 if args.quick else args.draws, args.seed)
    runs = []
    keep = {int(d) for d in args.only_draws.split(",")} if args.only_draws else None
    for d, label_cases in enumerate(draws):
        if keep is not None and d not in keep:
            continue
        labelled = load_cases(label_cases)
        for name in names:
            settings = VARIANTS[name]
            cfg = TrainConfig(
                mode="finetune", seed=args.seed + d, ft_steps=max(eval_at), **settings, **quick
            )
            print(f"{name} draw {d} {[c.id for c in label_cases]}", flush=True)
            result = run(backbone, pre, labelled, val, cfg, eval_at, args.device)
            runs.append({"variant": name, "draw": d, "labelled": [c.id for c in label_cases]})
            runs[-1].update(result)
    payload = {
        "model": model_name,
        "validation": [c.case.id for c in val],
        "variants": {n: TrainConfig(mode="finetune", **VARIANTS[n]).to_dict() for n in names},
        "runs": runs,
    }
    write_results(args.out, tagged("finetune_recipe", args.tag), payload, report(payload))


def report(payload: dict) -> str:
    runs = payload["runs"]
    steps = sorted({int(s) for r in runs for s in r["scores"]})
    rows = []
    for name in payload["variants"]:
        mine = [r for r in runs if r["variant"] == name]
        cells = []
        for s in steps:
            vals = [r["scores"][s]["summary"]["mean"] for r in mine if s in r["scores"]]
            cells.append(f"{np.mean(vals):.3f} ± {np.std(vals):.3f}" if vals else "")
        secs = [max(r["train_s"].values()) for r in mine if r["train_s"]]
        rows.append([name, *cells, f"{np.mean(secs):.0f}" if secs else ""])
    return (
        f"Fine-tuning recipes, one labelled patient ({len({r['draw'] for r in runs})} draws), "
        f"mean DICE on {len(payload['validation'])} validation patients (ED + ES), "
        f"backbone `{payload['model']}`; mean ± std over draws.\n\n"
        + table(["variant", *(f"step {s}" for s in steps), "train s (last step)"], rows)
        + "\n"
    )


if __name__ == "__main__":
    main()
