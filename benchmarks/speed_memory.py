"""Speed and memory of what a user waits for (CPU by default), each in a fresh process.

* linear probe fit on 3 annotated slices of a real volume (backbone load excluded);
* whole-volume prediction of a 10-slice 256x256 volume;
* fine-tuning from one labelled patient (ED + ES, every slice; the shipped recipe's
  steps), data preparation and the probe it starts from included;
* a pretraining step (see pretrain_speed.py for the breakdown).

Peak memory is the RSS high-water mark of the process that ran the measurement.

    python benchmarks/speed_memory.py --data ../shared/data/acdc
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
from common import cases_root, parser, pix2rep_backbone, table, write_results
from pretrain_speed import run_isolated

from napari_pix2rep.io.acdc import list_cases
from napari_pix2rep.segment.train_config import TrainConfig
from napari_pix2rep.segment.training import train_segmenter


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def probe_time(args) -> dict:
    net, pre, _ = pix2rep_backbone(args)
    case = list_cases(cases_root(args.data))[0]
    v = case.load()
    img, gt = v["ed"], v["ed_gt"].data
    lv = [z for z in range(gt.shape[0]) if (gt[z] == 3).any()]
    picks = [lv[len(lv) // 4], lv[len(lv) // 2], lv[(3 * len(lv)) // 4]]
    labels = np.zeros_like(gt)
    labels[picks] = gt[picks]
    cfg = TrainConfig(mode="linear", **({"probe_steps": 20} if args.quick else {}))
    times = []
    for _ in range(1 if args.quick else 3):
        t0 = time.perf_counter()
        train_segmenter(net, pre, [(img.data, img.spacing)], [labels], cfg, device=args.device)
        times.append(time.perf_counter() - t0)
    return {
        "what": f"linear probe, 3 slices of {case.id} {img.shape}",
        "seconds": statistics.median(times),
        "peak_mib": _peak_mib(),
    }


def finetune_time(args) -> dict:
    net, pre, _ = pix2rep_backbone(args)
    v = list_cases(cases_root(args.data))[0].load()
    images = [(v[k].data, v[k].spacing) for k in ("ed", "es")]
    labels = [v[k].data for k in ("ed_gt", "es_gt")]
    quick = {"probe_steps": 5, "ft_steps": 3, "crop": 64, "batch_size": 2}
    cfg = TrainConfig(mode="finetune", **(quick if args.quick else {}))
    t0 = time.perf_counter()
    train_segmenter(net, pre, images, labels, cfg, device=args.device)
    return {
        "what": f"fine-tune from one patient ({v['ed'].data.shape} ED + ES, {cfg.ft_steps} steps)",
        "seconds": time.perf_counter() - t0,
        "peak_mib": _peak_mib(),
    }


def predict_time(args) -> dict:
    from napari_pix2rep.model.segmenter import Segmenter
    from napari_pix2rep.segment.predict import predict_volume

    net, pre, _ = pix2rep_backbone(args)
    seg = Segmenter(net, preprocess=pre)
    shape = (2, 64, 64) if args.quick else (10, 256, 256)
    img = np.random.default_rng(0).random(shape).astype(np.float32)
    spacing = (10.0, 1.5, 1.5)
    predict_volume(seg, img, spacing, args.device)  # warm-up
    times = []
    for _ in range(1 if args.quick else 5):
        t0 = time.perf_counter()
        predict_volume(seg, img, spacing, args.device)
        times.append(time.perf_counter() - t0)
    return {
        "what": f"predict a {shape} volume at 1.5 mm",
        "seconds": statistics.median(times),
        "peak_mib": _peak_mib(),
    }


def main() -> None:
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--one", choices=tuple(MEASURES), help="Only this measurement (no files).")
    args = p.parse_args()
    if args.one:
        print(json.dumps(MEASURES[args.one](args)))
        return
    results = []
    for what in MEASURES:
        cmd = [sys.executable, __file__, "--one", what, *sys.argv[1:]]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode:
            raise SystemExit(f"The {what} measurement failed:\n{out.stderr[-2000:]}")
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    pre = "tiny" if args.quick else "small"
    r = run_isolated(pre, "infonce", args.device, 2 if args.quick else 10, 8)
    results.append(
        {
            "what": f"pretraining step ({pre}, InfoNCE, 2 x 8 slices at 128x128)",
            "seconds": r["step_s"],
            "peak_mib": r["peak_mib"],
        }
    )
    md = f"Speed and memory on {args.device} ({torch.get_num_threads()} threads).\n\n" + table(
        ["what", "seconds", "peak RSS (MiB)"],
        [[r["what"], f"{r['seconds']:.2f}", f"{r['peak_mib']:.0f}"] for r in results],
    )
    write_results(args.out, "speed_memory", {"results": results}, md)


MEASURES = {"probe": probe_time, "predict": predict_time, "finetune": finetune_time}

if __name__ == "__main__":
    main()
