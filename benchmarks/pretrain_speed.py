"""Pretraining speed: a full Pix2Rep step against the bare backbone on the same views.

For each preset and loss: median time of a whole training step (sampling, two
intensity-augmented views, warp, backbone forward + backward on both views, feature
warp, pixel sampling, projector, loss, Adam) and of the bare backbone forward + backward
on the same two views (``(2B, 1, 128, 128)``); their ratio is the augmentation + loss
overhead. Peak memory: RSS of a fresh process per configuration (CPU) or
``torch.cuda.max_memory_allocated`` (CUDA). The ``paper`` preset runs only with
``--paper`` (it needs a GPU to be practical).

    python benchmarks/pretrain_speed.py [--device cpu] [--paper]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def measure(preset_name: str, loss: str, device: str, steps: int, batch: int) -> dict:
    """Median step and bare forward+backward times (s) and peak memory (MiB), in-process."""
    from napari_pix2rep.evaluation.phantom import make_phantom
    from napari_pix2rep.model.preprocess import PreprocessConfig
    from napari_pix2rep.pretrain.config import PretrainConfig
    from napari_pix2rep.pretrain.run import Pretrainer
    from napari_pix2rep.pretrain.slices import SliceBank

    vols = [make_phantom(n_slices=10, size=(192, 192), seed=s) for s in range(3)]
    bank = SliceBank.from_arrays([(v.image, v.spacing) for v in vols], PreprocessConfig())
    cfg = PretrainConfig(preset=preset_name, loss=loss, steps=10**6, batch_size=batch)
    trainer = Pretrainer(bank, cfg, device=device)
    dev = trainer.device

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def timed(fn) -> list[float]:
        out = []
        for _ in range(steps + 2):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            out.append(time.perf_counter() - t0)
        return out[2:]  # the first calls build kernels

    step_times = timed(trainer._train_step)
    net = trainer.backbone
    x = torch.randn(2 * batch, 1, cfg.crop, cfg.crop, device=dev)
    if cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    amp = torch.autocast(dev.type, dtype=trainer.amp_dtype, enabled=trainer.use_amp)

    def bare() -> None:
        with amp:
            y = net(x)
        y.float().square().mean().backward()

    bare_times = timed(bare)
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    step, base = statistics.median(step_times), statistics.median(bare_times)
    return {
        "preset": preset_name,
        "loss": loss,
        "device": str(dev),
        "batch": batch,
        "step_s": step,
        "bare_s": base,
        "ratio": step / base,
        "peak_mib": peak,
        "params": sum(p.numel() for p in net.parameters()),
    }


def run_isolated(preset_name: str, loss: str, device: str, steps: int, batch: int) -> dict:
    """:func:`measure` in a fresh interpreter, so the peak memory is this config's own."""
    cmd = [
        sys.executable,
        __file__,
        "--one",
        preset_name,
        loss,
        "--device",
        device,
        "--steps",
        str(steps),
        "--batch-size",
        str(batch),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def markdown(results: list[dict]) -> str:
    lines = [
        "| preset | loss | device | step (s) | bare fwd+bwd (s) | ratio | peak memory (MiB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['preset']} | {r['loss']} | {r['device']} | {r['step_s']:.3f} | "
            f"{r['bare_s']:.3f} | {r['ratio']:.2f} | {r['peak_mib']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=10, help="Timed steps per configuration.")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--paper", action="store_true", help="Also the paper preset.")
    p.add_argument("--quick", action="store_true", help="tiny preset, 2 steps (smoke test).")
    p.add_argument("--one", nargs=2, metavar=("PRESET", "LOSS"), help=argparse.SUPPRESS)
    p.add_argument("--out", default=str(HERE / "results"))
    args = p.parse_args()
    if args.one:
        print(json.dumps(measure(*args.one, args.device, args.steps, args.batch_size)))
        return
    presets = ["tiny"] if args.quick else ["small"] + (["paper"] if args.paper else [])
    steps = 2 if args.quick else args.steps
    results = [
        run_isolated(pr, loss, args.device, steps, args.batch_size)
        for pr in presets
        for loss in ("infonce", "barlow")
    ]
    sys.path.insert(0, str(HERE))
    from common import write_results

    write_results(args.out, "pretrain_speed", {"results": results}, markdown(results))


if __name__ == "__main__":
    main()
