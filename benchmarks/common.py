"""Shared pieces of the benchmark scripts: data, models, methods, result files.

Every script takes ``--data`` (a folder of ACDC-style cases: ``../shared/data/acdc`` or
its ``training`` folder, or a synthetic stand-in written by
``napari_pix2rep.evaluation.phantom.write_phantom_dataset``), writes ``<name>.json`` and
``<name>.md`` into ``--out`` and prints the Markdown table. ``--quick`` is a smoke mode for tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from napari_pix2rep.core.progress import run_to_end
from napari_pix2rep.evaluation.protocols import CLASS_NAMES, LoadedCase
from napari_pix2rep.io.acdc import GROUPS, Case, list_cases, split_validation
from napari_pix2rep.io.outputs import atomic_write
from napari_pix2rep.model.checkpoint import default_backbone_path
from napari_pix2rep.model.nets.unet import UNet
from napari_pix2rep.model.preprocess import PreprocessConfig
from napari_pix2rep.model.segmenter import load_backbone
from napari_pix2rep.pretrain.config import PretrainConfig
from napari_pix2rep.pretrain.run import Pretrainer
from napari_pix2rep.pretrain.slices import load_slices
from napari_pix2rep.segment.settings import FUSE_WEIGHT, Registration, SegmentSettings
from napari_pix2rep.segment.train_config import TrainConfig

REPO = Path(__file__).resolve().parents[1]


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data", required=True, help="ACDC folder (or a phantom dataset).")
    p.add_argument("--model", default=None, help="Pix2Rep backbone (default: the shipped one).")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="Smoke mode: tiny and fast.")
    p.add_argument(
        "--tag", default="", help="Suffix for the result files (parallel partial runs)."
    )
    return p


def add_localise_flag(p: argparse.ArgumentParser, cue: str) -> None:
    """``--localise`` / ``--no-localise`` (on by default, as in the dock and the CLI):
    predict on the heart region that ``cue`` gives (no labels of the target)."""
    p.add_argument(
        "--localise",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=f"Predict on the heart region of {cue} (the default).",
    )


def add_pipeline_flags(p: argparse.ArgumentParser) -> None:
    """``--localise`` / ``--propagate`` (both on by default, as in the dock)."""
    add_localise_flag(p, "the painted slices")
    p.add_argument(
        "--propagate",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Carry the painted ED slices to ES by registration (the default).",
    )
    p.add_argument(
        "--fuse",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Fuse ES's prediction with ED's carried onto it (the default, as in the dock).",
    )
    p.add_argument(
        "--registration",
        type=registration,
        default=Registration(),
        metavar="GRID,STEPS,BENDING",
        help="Registration settings to compare (default: the shipped ones, 6,80,0.05).",
    )
    p.add_argument(
        "--fuse-weight",
        type=float,
        default=FUSE_WEIGHT,
        help=f"Weight of ED's carried prediction in ES's (default: the shipped {FUSE_WEIGHT}).",
    )


def registration(text: str) -> Registration:
    """``GRID,STEPS,BENDING`` (control grid in pixels, Adam steps per level, bending)."""
    try:
        return Registration.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def pipeline_settings(args: argparse.Namespace, training: TrainConfig) -> SegmentSettings:
    """The recipe's settings of ``add_pipeline_flags`` (and ``--cleanup``, when the script
    has it) with ``training``."""
    return SegmentSettings.from_flags(args, training)


def describe_pipeline(settings: SegmentSettings) -> str:
    """``localise=..., propagate=..., fuse=..., registration ...; fuse weight ...``."""
    r = settings.registration
    return (
        f"localise={settings.localise}, propagate={settings.propagate}, fuse={settings.fuse}, "
        f"registration grid {r.control_spacing} px, {r.steps} steps, bending {r.bending}; "
        f"fuse weight {settings.fuse_weight}"
    )


def cases_root(data: str) -> Path:
    root = Path(data)
    return root / "training" if (root / "training").is_dir() else root


def load_split(data: str, quick: bool) -> tuple[list[Case], list[Case]]:
    """(label pool, validation cases): validation = case numbers divisible by 5."""
    pool, val = split_validation(list_cases(cases_root(data)))
    if not val:
        raise SystemExit("No validation cases (case numbers divisible by 5) in --data.")
    if quick:
        val = val[:2]
    return pool, val


def spread_subset(cases: list, n: int) -> list:
    """About ``n`` of ``cases``, every k-th (validation cases are in group order, so the
    subset keeps every pathology group); all of them when ``n`` is 0 or too large."""
    if n <= 0 or n >= len(cases):
        return list(cases)
    return list(cases[:: len(cases) // n])


def draw_label_sets(pool: list[Case], budget: int, draws: int, seed: int) -> list[list[Case]]:
    """``draws`` sets of ``budget`` labelled cases, each draw from other pathology groups.

    Groups are taken in turn (DCM, HCM, MINF, NOR, RV, shifted by the draw), one case
    per group (at random within it), so one-patient draws cover different pathologies.
    """
    rng = np.random.default_rng(seed)
    by_group = {g: [c for c in pool if c.group == g] for g in GROUPS}
    by_group = {g: cs for g, cs in by_group.items() if cs} or {"?": list(pool)}
    groups = list(by_group)
    sets = []
    for d in range(draws):
        chosen: list[Case] = []
        for j in range(budget):
            g = groups[(d * budget + j) % len(groups)]
            left = [c for c in by_group[g] if c not in chosen] or [
                c for c in pool if c not in chosen
            ]
            chosen.append(left[int(rng.integers(len(left)))])
        sets.append(chosen)
    return sets


def pix2rep_backbone(args) -> tuple[torch.nn.Module, PreprocessConfig, str]:
    """The backbone under test: --model, the shipped one, or (quick) a tiny one."""
    if args.model:
        net, pre, _ = load_backbone(args.model)
        return net, pre, args.model
    if args.quick:
        pool, _ = load_split(args.data, True)
        files = [c.ed for c in pool[:2]]
        bank = run_to_end(load_slices([], files, PreprocessConfig()))
        cfg = PretrainConfig(preset="tiny", steps=3, batch_size=2, crop=64)
        t = Pretrainer(bank, cfg, device=args.device)
        t.run()
        return t.backbone, cfg.preprocess, "tiny (3 steps, quick mode)"
    path = default_backbone_path()
    net, pre, _ = load_backbone(path)
    return net, pre, str(path.relative_to(REPO) if path.is_relative_to(REPO) else path)


def random_backbone(like: torch.nn.Module, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return UNet(like.config)


def train_configs(quick: bool) -> dict[str, TrainConfig]:
    """The recipes compared (same annotations each): see docs/benchmarks.md."""
    q = dict(probe_steps=20, ft_steps=6, eval_every=3, crop=64, batch_size=2) if quick else {}
    return {
        "linear": TrainConfig(mode="linear", **q),
        "finetune": TrainConfig(mode="finetune", **q),
        "scratch": TrainConfig(
            mode="finetune",
            lr_backbone=1e-3,
            lr_head=1e-3,
            freeze_bn=False,
            **({"ft_steps": 600} | q),
        ),
    }


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )


def mean_spread(values: list[float]) -> str:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return "n/a"
    if v.size == 1:
        return f"{v[0]:.3f}"
    return f"{v.mean():.3f} ± {v.std(ddof=0):.3f}"


def tagged(name: str, tag: str) -> str:
    """Result file stem: ``name`` or ``name_tag``."""
    return f"{name}_{tag}" if tag else name


def write_results(out: str, name: str, payload: dict, markdown: str) -> None:
    """``<out>/<name>.json`` and ``<out>/<name>.md`` (atomic), and the table on stdout."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    payload = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        **payload,
    }
    for suffix, text in (
        (".json", json.dumps(payload, indent=1, default=float)),
        (".md", markdown),
    ):
        atomic_write(folder / f"{name}{suffix}", lambda fh, t=text: fh.write(t.encode()))
    print(markdown)


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def load_cases(cases: list[Case]) -> list[LoadedCase]:
    return [LoadedCase.load(c) for c in cases]


__all__ = ["CLASS_NAMES"]
