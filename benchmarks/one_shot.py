"""one-shot-acdc (DESIGN.md): segment held-out patients from 1, 2 or 5 labelled ones.

Methods, all trained on the same labelled patients (ED + ES, every slice):

* ``pix2rep-linear``  linear probe on the Pix2Rep backbone (frozen);
* ``pix2rep-finetune`` the whole network fine-tuned from it;
* ``scratch``          the same U-Net trained from a random initialisation;
* ``random-linear``    a linear probe on a randomly initialised backbone;
* ``simclr-linear`` / ``simclr-finetune`` from an image-level SimCLR backbone
  (``--simclr``, METHOD.md section 3), when given.

Validation: ACDC training patients whose number is a multiple of 5 (ED and ES, 3D
DICE per volume, native grid). Labels are drawn from the other patients, one pathology
group per drawn patient.

    python benchmarks/one_shot.py --data ../shared/data/acdc [--simclr runs/simclr.pt]
        [--probe-head linear|hypercolumn|...]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from common import (
    CLASS_NAMES,
    add_localise_flag,
    draw_label_sets,
    load_cases,
    load_split,
    mean_spread,
    parser,
    pix2rep_backbone,
    random_backbone,
    table,
    tagged,
    train_configs,
    write_results,
)

from napari_pix2rep.core.choices import PROBE_HEADS
from napari_pix2rep.evaluation.protocols import evaluate, summarise, train_on_cases
from napari_pix2rep.model.segmenter import load_backbone


def main() -> None:
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--simclr", default=None, help="SimCLR baseline backbone file.")
    p.add_argument("--budgets", default="1,2,5", help="Labelled patients per draw.")
    p.add_argument("--draws", default="3,1,1", help="Draws for each budget.")
    p.add_argument(
        "--methods",
        default=None,
        help="Comma-separated subset (default: all, simclr-* when --simclr is given).",
    )
    p.add_argument(
        "--cleanup",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Keep the heart's largest 3D components (the default).",
    )
    p.add_argument(
        "--probe-head",
        choices=PROBE_HEADS,
        default=None,
        help="What the linear probe reads (default: TrainConfig's, the shipped one).",
    )
    # the 2026-11-22 tables of docs/benchmarks.md used --no-localise
    add_localise_flag(p, "the ED/ES motion, as `pix2rep predict ED ES` does")
    p.add_argument(
        "--merge",
        default=None,
        help="Comma-separated tags of partial runs in --out to merge into one table.",
    )
    args = p.parse_args()
    if args.merge:
        merge(args.out, args.merge.split(","))
        return
    budgets = [int(b) for b in args.budgets.split(",")]
    draws = [int(d) for d in args.draws.split(",")]
    if args.methods:
        methods = args.methods.split(",")
    else:
        methods = ["pix2rep-linear", "pix2rep-finetune", "scratch", "random-linear"]
        methods += ["simclr-linear", "simclr-finetune"] if args.simclr else []
    if any(m.startswith("simclr") for m in methods) and not args.simclr:
        p.error("simclr-* methods need --simclr BACKBONE.pt")
    if args.quick:
        budgets, draws = budgets[:1], [1]

    backbone, pre, model_name = pix2rep_backbone(args)
    sources = {"pix2rep": (backbone, pre), "random": (random_backbone(backbone, args.seed), pre)}
    if args.simclr:
        net, spre, _ = load_backbone(args.simclr)
        sources["simclr"] = (net, spre)
    recipes = train_configs(args.quick)
    if args.probe_head:
        recipes = {m: replace(r, probe_head=args.probe_head) for m, r in recipes.items()}
    pool, val_cases = load_split(args.data, args.quick)
    val = load_cases(val_cases)
    runs = []
    for budget, n_draws in zip(budgets, draws):
        for d, label_cases in enumerate(draw_label_sets(pool, budget, n_draws, args.seed)):
            labelled = load_cases(label_cases)
            for method in methods:
                if method == "scratch":
                    source, recipe = sources["random"], recipes["scratch"]
                else:
                    name, mode = method.split("-")
                    source, recipe = sources[name], recipes[mode]
                recipe.seed = args.seed + d
                t0 = time.perf_counter()
                seg, train_s = train_on_cases(*source, labelled, recipe, args.device)
                rows = evaluate(
                    seg, val, args.device, cleanup=args.cleanup, localise=args.localise
                )
                s = summarise(rows)
                runs.append(
                    {
                        "method": method,
                        "budget": budget,
                        "draw": d,
                        "labelled": [c.id for c in label_cases],
                        "train_s": train_s,
                        "total_s": time.perf_counter() - t0,
                        "summary": s,
                        "rows": rows,
                    }
                )
                print(
                    f"{method:17s} budget {budget} draw {d} {[c.id for c in label_cases]}: "
                    f"mean {s['mean']:.3f} (train {train_s:.0f} s)",
                    flush=True,
                )

    payload = {
        "model": model_name,
        "simclr": args.simclr,
        "validation": [c.case.id for c in val],
        "runs": runs,
    }
    write_results(args.out, tagged("one_shot", args.tag), payload, report(payload))


def report(payload: dict) -> str:
    """The Markdown table (mean ± std over draws per method and budget) and the gaps."""
    runs = payload["runs"]
    budgets = sorted({r["budget"] for r in runs})
    methods = list(dict.fromkeys(r["method"] for r in runs))
    header = ["method", "labelled patients", "draws", *CLASS_NAMES, "mean"]
    lines = []
    for budget in budgets:
        for method in methods:
            mine = [r for r in runs if r["method"] == method and r["budget"] == budget]
            if not mine:
                continue
            cells = [mean_spread([r["summary"][k] for r in mine]) for k in (*CLASS_NAMES, "mean")]
            lines.append([method, str(budget), str(len(mine)), *cells])
    md = (
        f"one-shot-acdc on {len(payload['validation'])} validation patients (ED + ES), "
        f"backbone `{payload['model']}`; mean ± spread (std) over draws.\n\n"
        + table(header, lines)
    )
    gaps = []
    for budget in budgets:
        pick = {
            m: [r["summary"]["mean"] for r in runs if r["method"] == m and r["budget"] == budget]
            for m in methods
        }
        if pick.get("scratch"):
            for m in ("pix2rep-linear", "pix2rep-finetune"):
                if pick.get(m):
                    gaps.append(
                        f"{m} - scratch, {budget} patient(s): "
                        f"{np.mean(pick[m]) - np.mean(pick['scratch']):+.3f}"
                    )
    return md + "\n\n" + "\n".join(f"- {g}" for g in gaps) + "\n"


def merge(out: str, parts: list[str]) -> None:
    """One table from partial runs (``--tag``) on the same validation patients."""
    payloads = [
        json.loads((Path(out) / f"{tagged('one_shot', t)}.json").read_text()) for t in parts
    ]
    if len({tuple(p["validation"]) for p in payloads}) != 1:
        raise SystemExit("The partial runs were not scored on the same validation patients.")
    merged = {
        "model": payloads[0]["model"],
        "simclr": next((p["simclr"] for p in payloads if p.get("simclr")), None),
        "validation": payloads[0]["validation"],
        "parts": [p["command"] for p in payloads],
        "runs": [r for p in payloads for r in p["runs"]],
    }
    write_results(out, "one_shot", merged, report(merged))


if __name__ == "__main__":
    main()
