"""The default cardiac model on the validation patients: zero clicks, painted slices, the
correction loop, EF, another scanner, and the whole command's time.

Every protocol runs the Segment recipe (as the dock and ``pix2rep segment`` do) with the
default segmenter (``--segmenter``, default: the shipped ``models/pix2rep_cardiac_acdc.pt``):

- ``zero``: nothing painted; DICE on every ED and ES slice; LV / RV EF error.
- ``few``: two painted ED slices (kept as painted; they adapt the model only with
  ``--adapt-steps`` > 0, else the unpainted voxels are the zero-click ones by
  construction); DICE on the unpainted ED slices and all of ES, and the zero-click DICE
  on the same voxels (patients made worse by painting).
- ``loop``: the annotation loop from two painted ED slices, three perfect corrections of
  the worst slice; every round (and zero clicks) scored on the same slices, those never
  painted by the last round; patients made worse per round.
- ``sunnybrook``: the Sunnybrook cine (GE 1.5 T, a scanner and site the model never saw),
  zero clicks, every frame; DICE on the contoured slices (LV at ED and ES, MYO at ED).
- ``command``: wall time of ``pix2rep segment --image ED --image ES`` (zero clicks) and
  with ``--labels`` (two painted ED slices), whole command, for a few patients.

    python benchmarks/default_model.py --data ../shared/data/acdc --protocols zero,few,loop
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import (
    REPO,
    add_pipeline_flags,
    describe_pipeline,
    load_cases,
    load_split,
    parser,
    pipeline_settings,
    spread_subset,
    table,
    tagged,
    write_results,
)

from napari_pix2rep.evaluation.protocols import (
    CLASS_NAMES,
    annotation_loop,
    few_slice,
    few_slice_given,
    summarise,
    zero_clicks,
)
from napari_pix2rep.io.dicom import read_dicom
from napari_pix2rep.io.nifti_write import write_nifti
from napari_pix2rep.io.sunnybrook import LV, MYO, contoured_slices
from napari_pix2rep.measure.metrics import dice_per_class
from napari_pix2rep.model.checkpoint import default_segmenter_path
from napari_pix2rep.model.segmenter import Segmenter
from napari_pix2rep.segment.recipe import Scan, segment
from napari_pix2rep.segment.settings import SegmentSettings
from napari_pix2rep.segment.train_config import TrainConfig

SERIES = REPO.parent / "shared" / "data" / "sunnybrook_dicom" / "SCD0000101"


def ef_errors(rows: list[dict]) -> dict[str, float]:
    """Mean and worst absolute LV / RV EF error (points) over the cases of ``rows``."""
    ed = [r for r in rows if r["phase"] == "ED"]
    out = {}
    for k in ("LV", "RV"):
        err = np.abs([r[f"{k}_EF"] - r[f"{k}_EF_truth"] for r in ed])
        out[f"{k}_EF_mean"], out[f"{k}_EF_worst"] = float(err.mean()), float(err.max())
    return out


def sunnybrook(seg: Segmenter, settings: SegmentSettings, device: str, series: Path) -> dict:
    """Zero clicks on the whole cine; DICE on the contoured slices."""
    vol = read_dicom(series)
    contoured = contoured_slices(series, vol)
    t0 = time.perf_counter()
    outcome = segment([Scan(vol.data, vol.spacing, "cine")], [None], seg, settings, device)
    seconds = time.perf_counter() - t0
    labels = outcome.masks[0].labels
    out: dict[str, list[float]] = {"LV": [], "MYO": []}
    for frame in sorted({c.frame for c in contoured}):
        mine = [c for c in contoured if c.frame == frame]
        p = np.stack([labels[frame, c.slice] for c in mine])
        g = np.stack([c.labels for c in mine])
        out["LV"].append(dice_per_class(p, g, [LV])[LV])
        if all(c.has_myocardium for c in mine):
            out["MYO"].append(dice_per_class(p, g, [MYO])[MYO])
    lv, myo = float(np.mean(out["LV"])), float(np.mean(out["MYO"]))
    return {
        "LV": lv,
        "MYO": myo,
        "mean": (lv + myo) / 2,
        "seconds": seconds,
        "frames": len(labels),
    }


def command_seconds(model: str, cases, device: str) -> list[dict]:
    """Wall time of the whole ``pix2rep segment`` command, zero clicks and two painted
    ED slices, on each case."""
    rows = []
    for c in cases:
        with tempfile.TemporaryDirectory() as tmp:
            given = few_slice_given(c.ed_gt.data)
            labels = np.zeros_like(c.ed_gt.data)
            labels[given] = c.ed_gt.data[given]
            lab = write_nifti(Path(tmp) / "ed_paint_labels.nii.gz", labels, c.ed, kind="labels")
            base = [sys.executable, "-m", "napari_pix2rep.cli", "segment", "--model", model]
            base += ["--device", device]
            for name, extra in (("zero", []), ("painted", ["--labels", str(lab)])):
                argv = [*base, "--image", str(c.case.ed), *extra, "--image", str(c.case.es)]
                argv += ["--out-dir", str(Path(tmp) / name)]
                t0 = time.perf_counter()
                subprocess.run(argv, check=True, capture_output=True)
                rows.append({"case": c.case.id, "protocol": name, "s": time.perf_counter() - t0})
    return rows


def _dice_table(runs: dict[str, list[dict]]) -> str:
    lines = []
    for name, rows in runs.items():
        for phase in ("ED", "ES"):
            s = summarise([r for r in rows if r["phase"] == phase])
            lines.append([name, phase, *(f"{s[k]:.3f}" for k in (*CLASS_NAMES, "mean"))])
        s = summarise(rows)
        lines.append([name, "both", *(f"{s[k]:.3f}" for k in (*CLASS_NAMES, "mean"))])
    return table(["protocol", "phase", *CLASS_NAMES, "mean"], lines)


def report(payload: dict) -> str:
    parts = [
        f"Default model `{payload['model']}` on {payload['patients']} validation patients "
        f"(ids multiple of 5), the Segment recipe ({payload['pipeline']}).\n"
    ]
    runs = {k: payload[k] for k in ("zero", "few") if k in payload}
    if runs:
        parts.append(_dice_table(runs))
        for k, rows in runs.items():
            e = ef_errors(rows)
            parts.append(
                f"\n{k}: LV EF error {e['LV_EF_mean']:.1f} mean / {e['LV_EF_worst']:.1f} worst "
                f"points; RV EF error {e['RV_EF_mean']:.1f} / {e['RV_EF_worst']:.1f}."
            )
    if "few" in payload:
        worse = payload["few_worse_than_zero"]
        parts.append(
            f"\nfew (2 painted ED slices) vs zero clicks on the same voxels: mean "
            f"{payload['few_vs_zero'][0]:.3f} vs {payload['few_vs_zero'][1]:.3f}; "
            f"{len(worse)} patient(s) worse: {', '.join(worse) or 'none'}."
        )
    if "loop" in payload:
        lines = []
        for r, stats in payload["loop_rounds"].items():
            lines.append([r, *(f"{stats[k]:.3f}" for k in ("ED", "ES", "mean", "worst"))])
            lines[-1].append(str(stats["worse_than_before"]))
        parts.append(
            f"\ncorrection loop on {len(payload['loop_patients'])} of these patients, every "
            "round on the same slices (never painted by the last round):\n\n"
            + table(["painted", "ED", "ES", "mean", "worst patient", "patients worse"], lines)
        )
    if "sunnybrook" in payload:
        sb = payload["sunnybrook"]
        parts.append(
            f"\nSunnybrook SCD0000101 (GE 1.5 T), zero clicks on all {sb['frames']} frames: "
            f"LV {sb['LV']:.3f}, MYO {sb['MYO']:.3f}, mean {sb['mean']:.3f} "
            f"({sb['seconds']:.1f} s)."
        )
    if "command_seconds" in payload:
        for name in ("zero", "painted"):
            s = [r["s"] for r in payload["command_seconds"] if r["protocol"] == name]
            parts.append(
                f"\n`pix2rep segment` ED + ES, {name}: {np.mean(s):.1f} s mean, "
                f"{max(s):.1f} s worst ({len(s)} patients, whole command)."
            )
    return "\n".join(parts) + "\n"


def _loop_rounds(rows: list[dict]) -> dict[str, dict]:
    out = {}
    for r in sorted({x["round"] for x in rows}):
        mine = [x for x in rows if x["round"] == r]
        prev = {x["case"]: x["mean"] for x in rows if x["round"] == r - 1}
        out["0 (zero clicks)" if r < 0 else str(2 + r)] = {
            "ED": float(np.nanmean([x["ED"] for x in mine])),
            "ES": float(np.nanmean([x["ES"] for x in mine])),
            "mean": float(np.nanmean([x["mean"] for x in mine])),
            "worst": float(min(x["mean"] for x in mine)),
            "worse_than_before": sum(
                x["mean"] < prev[x["case"]] - 1e-9 for x in mine if x["case"] in prev
            ),
        }
    return out


def main() -> None:
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--segmenter", default=None, help="default: the shipped default model")
    p.add_argument("--protocols", default="zero,few,loop,sunnybrook,command")
    p.add_argument("--patients", type=int, default=20)
    p.add_argument("--loop-patients", type=int, default=10)
    p.add_argument("--command-patients", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--series", default=str(SERIES))
    p.add_argument("--adapt-steps", type=int, default=TrainConfig.adapt_steps)
    p.add_argument("--adapt-lr", type=float, default=TrainConfig.adapt_lr)
    add_pipeline_flags(p)
    args = p.parse_args()
    path = Path(args.segmenter) if args.segmenter else default_segmenter_path()
    if path is None:
        raise SystemExit("No default segmenter: pass --segmenter.")
    seg = Segmenter.from_file(path)
    training = TrainConfig(seed=args.seed, adapt_steps=args.adapt_steps, adapt_lr=args.adapt_lr)
    settings = pipeline_settings(args, training)
    _, val = load_split(args.data, args.quick)
    cases = load_cases(spread_subset(val, args.patients))
    todo = set(args.protocols.split(","))
    show = lambda m: print(m, flush=True)  # noqa: E731
    payload: dict = {
        "model": path.name,
        "patients": len(cases),
        "pipeline": describe_pipeline(settings),
        "settings": settings.to_dict(),
    }
    if "zero" in todo:
        payload["zero"] = zero_clicks(seg, cases, settings, args.device, show)
        payload["zero_summary"] = {**summarise(payload["zero"]), **ef_errors(payload["zero"])}
    if "few" in todo:
        rows = few_slice(seg, cases, settings, args.device, progress=show, versus_zero=True)
        payload["few"] = rows
        payload["few_summary"] = {**summarise(rows), **ef_errors(rows)}
        per_case = {}
        for r in rows:
            per_case.setdefault(r["case"], []).append((r["mean"], r["zero_mean"]))
        payload["few_worse_than_zero"] = [
            c
            for c, v in per_case.items()
            if np.mean([a for a, _ in v]) < np.mean([b for _, b in v])
        ]
        payload["few_vs_zero"] = [
            float(np.nanmean([r["mean"] for r in rows])),
            float(np.nanmean([r["zero_mean"] for r in rows])),
        ]
    if "loop" in todo:
        loop_cases = cases[: args.loop_patients] if args.loop_patients else cases
        rows = annotation_loop(
            seg, loop_cases, settings, args.rounds, args.device, show, with_zero=True
        )
        payload["loop"] = rows
        payload["loop_patients"] = [c.case.id for c in loop_cases]
        payload["loop_rounds"] = _loop_rounds(rows)
    if "sunnybrook" in todo and Path(args.series).is_dir():
        payload["sunnybrook"] = sunnybrook(seg, settings, args.device, Path(args.series))
    if "command" in todo:
        payload["command_seconds"] = command_seconds(
            str(path), cases[: args.command_patients], args.device
        )
    write_results(args.out, tagged("default_model", args.tag), payload, report(payload))


if __name__ == "__main__":
    main()
