"""Train the default cardiac segmenter (models/README.md) on the ACDC training patients.

Initialised from the shipped Pix2Rep backbone; trained on every slice of ED and ES of the
ACDC patients that are not validation patients (ids not a multiple of 5), whole field of
view; validated on the validation patients (ids multiple of 5). Checkpoints the whole run
state to ``--state`` and continues it with ``--resume`` (after any interruption: SIGTERM
and Ctrl-C save the state first). Runs on any device (``--device``); CPU is enough.

    OMP_NUM_THREADS=1 python benchmarks/train_default_model.py ../shared/data/acdc/training \
        --state runs/default_model.pt --resume --threads 1
    python benchmarks/train_default_model.py ../shared/data/acdc/training \
        --state runs/default_model.pt --ship models/pix2rep_cardiac_acdc.pt
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

import torch

from napari_pix2rep.core.classes import DEFAULT_CLASSES
from napari_pix2rep.io.acdc import list_cases, split_validation
from napari_pix2rep.model.checkpoint import atomic_torch_save, default_backbone_path
from napari_pix2rep.model.device import resolve_device
from napari_pix2rep.model.segmenter import Segmenter, load_backbone
from napari_pix2rep.segment.supervised import (
    PRIOR_CORRECTION,
    SupervisedConfig,
    SupervisedRun,
    class_weights_of,
    pack_cases,
    shipped_segmenter,
    train_iter,
    with_context,
)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("root", help="ACDC training folder (patientNNN/ with Info.cfg)")
    p.add_argument("--state", required=True, help="training state file (written, resumed)")
    p.add_argument("--resume", action="store_true", help="continue --state if it exists")
    p.add_argument("--backbone", default=None, help="initial backbone (default: shipped)")
    p.add_argument(
        "--init", default=None, help="start from this segmenter file instead of a backbone"
    )
    p.add_argument(
        "--context",
        type=int,
        default=0,
        help="neighbour slices on either side the network sees (a new run; default 0)",
    )
    p.add_argument("--steps", type=int, default=SupervisedConfig.steps)
    p.add_argument("--aux-weight", type=float, default=SupervisedConfig.aux_weight)
    p.add_argument("--lr", type=float, default=SupervisedConfig.lr)
    p.add_argument("--warmup", type=int, default=SupervisedConfig.warmup)
    p.add_argument("--validate-every", type=int, default=SupervisedConfig.validate_every)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-cases", type=int, default=None, help="validate on the first N")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--ship", default=None, help="write the shipped model file and exit")
    p.add_argument("--last", action="store_true", help="ship the last step, not the best")
    p.add_argument(
        "--prior-correction",
        type=float,
        default=PRIOR_CORRECTION,
        help=f"scale of the class-prior correction of the shipped head ({PRIOR_CORRECTION})",
    )
    p.add_argument(
        "--no-flip-average", action="store_true", help="ship without test-time mirror averaging"
    )
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    state = Path(args.state)
    pool, val = split_validation(list_cases(args.root))
    if args.ship:
        run = SupervisedRun.load(state, torch.device("cpu"))
        weights = class_weights_of(pack_cases(pool, run.segmenter), run.segmenter.n_classes)
        shipped = shipped_segmenter(
            run, not args.last, weights, args.prior_correction, not args.no_flip_average
        )
        out = atomic_torch_save(shipped, args.ship)
        step = torch.load(out, weights_only=True)["meta"]["steps"]
        print(f"Wrote {out} ({out.stat().st_size / 1e6:.1f} MB): the weights of step {step}.")
        return 0
    if args.val_cases is not None:
        val = val[: args.val_cases]
    if args.resume and state.is_file():
        run = SupervisedRun.load(state, dev)
        print(f"Resumed {state} at step {run.step} of {run.cfg.steps}.", flush=True)
        if args.steps != run.cfg.steps:
            run.cfg = SupervisedConfig.from_dict({**run.cfg.to_dict(), "steps": args.steps})
    else:
        cfg = SupervisedConfig(
            steps=args.steps,
            aux_weight=args.aux_weight,
            lr=args.lr,
            seed=args.seed,
            warmup=args.warmup,
            validate_every=args.validate_every,
        )
        torch.manual_seed(cfg.seed)
        if args.init:
            seg = Segmenter.from_file(args.init)
            seg.meta = {"init": Path(args.init).name}
        else:
            backbone, preprocess, _ = load_backbone(args.backbone or default_backbone_path())
            seg = Segmenter(backbone, DEFAULT_CLASSES, preprocess)
        if args.context:
            seg = with_context(seg, args.context)
        run = SupervisedRun(seg, cfg, dev)
    t0 = time.perf_counter()
    data = pack_cases(pool, run.segmenter)
    print(
        f"{len(data)} slices of {len(pool)} patients in {time.perf_counter() - t0:.0f} s; "
        f"validation on {len(val)} patients.",
        flush=True,
    )
    stop = {"now": False}

    def handle(signum, frame) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    for prog in train_iter(run, data, val, state, lambda: stop["now"]):
        if prog.step % 50 == 0 or prog.message:
            loss = f"{prog.loss:.4f}" if prog.loss is not None else "-"
            print(
                f"step {prog.step}/{prog.total} loss {loss} eta {prog.eta_s / 60:.0f} min "
                f"{prog.message}",
                flush=True,
            )
    print(f"Stopped at step {run.step}; state in {state}.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
