"""``pix2rep pretrain``: Pix2Rep pretraining of a backbone, through :func:`jobs.pretrain_job`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from napari_pix2rep.cli.common import (
    EXIT_INTERRUPTED,
    CliError,
    StopOnSignal,
    add_device,
    add_seed,
    cores_to_leave,
    sigterm_interrupts,
)
from napari_pix2rep.core.choices import LOSSES, PRESET_NAMES
from napari_pix2rep.core.progress import Progress, format_duration
from napari_pix2rep.io.datafiles import LABEL_NAMES


def add_pretrain(sub) -> None:
    p = sub.add_parser("pretrain", help="Pix2Rep self-supervised pretraining of a backbone.")
    p.add_argument(
        "data", nargs="+", metavar="DATA", help="NIfTI files, DICOM series or folders (recursive)."
    )
    p.add_argument("--out", required=True, metavar="BACKBONE.pt", help="Checkpoint to write.")
    # None = not given: a new run takes the default, a resumed one its checkpoint's value
    p.add_argument(
        "--preset",
        choices=PRESET_NAMES,
        default=None,
        help="small (CPU-friendly, default), paper (the authors', GPU), tiny (tests).",
    )
    p.add_argument(
        "--loss",
        choices=LOSSES,
        default=None,
        help="Pix2Rep InfoNCE (default) or Barlow Twins; simclr = image-level baseline.",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="Total number of steps (1000; on --resume the run's own).",
    )
    p.add_argument(
        "--batch-size", type=int, default=None, help="Slices per step (per process, 8)."
    )
    p.add_argument("--init", metavar="BACKBONE.pt", help="Start from these weights.")
    p.add_argument(
        "--resume",
        metavar="BACKBONE.pt",
        help="Continue this run (to --steps); its preset, loss, batch size, lr and seed "
        "cannot change.",
    )
    add_device(p)
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="Also skip files matching this glob (repeatable); label files "
        f"({LABEL_NAMES}) are always skipped.",
    )
    add_seed(p, None, "Random seed (0).")
    p.add_argument("--lr", type=float, default=None, help="Peak learning rate (4.7e-4).")
    p.add_argument(
        "--checkpoint-every", type=int, default=None, metavar="N", help="Save every N steps (100)."
    )
    p.add_argument(
        "--checkpoint-minutes",
        type=float,
        default=None,
        metavar="M",
        help="Also save when M minutes have passed since the last save (2; 0 = never).",
    )
    p.add_argument(
        "--snapshot-every",
        type=int,
        default=None,
        metavar="N",
        help="Also keep a copy of the checkpoint every N steps (OUT_stepN.pt).",
    )
    p.add_argument("--log-every", type=int, default=10, metavar="N")
    p.set_defaults(func=cmd_pretrain)


def pretrain_config(args: argparse.Namespace):
    """The run's :class:`PretrainConfig`: the flags given over the defaults, or, with
    ``--resume``, the checkpoint's run with only its cadence and ``--steps`` changed."""
    from napari_pix2rep.model.checkpoint import ModelFileError, load_model_file
    from napari_pix2rep.pretrain.config import (
        RESUMABLE,
        TRAJECTORY,
        PretrainConfig,
        resume_conflicts,
    )

    given = {name: getattr(args, name) for name in TRAJECTORY + RESUMABLE}
    if not args.resume:
        return PretrainConfig(**{k: v for k, v in given.items() if v is not None})
    state = load_model_file(args.resume, expect="backbone")
    if "resume" not in state:
        raise ModelFileError(f"{args.resume} holds no training state to resume.")
    try:
        saved = PretrainConfig(**dict(state["resume"]["config"]))
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFileError(f"{args.resume} holds unreadable run settings ({e}).") from None
    conflicts = resume_conflicts(saved, given)
    if conflicts:
        what = ", ".join(
            f"--{name.replace('_', '-')} {new:g} (the run's {old:g})"
            if isinstance(new, float)
            else f"--{name.replace('_', '-')} {new} (the run's {old})"
            for name, (new, old) in conflicts.items()
        )
        raise CliError(
            f"--resume {args.resume} continues a run with other settings: {what}; drop "
            "them (on resume only --steps, --checkpoint-every, --checkpoint-minutes and "
            "--snapshot-every can change)."
        )
    for name in RESUMABLE:
        if given[name] is not None:
            setattr(saved, name, given[name])
    PretrainConfig(**saved.to_dict())  # the changed cadence is checked like a new run's
    return saved


def _progress_printer(log_every: int) -> Callable[[Progress], None]:
    """What ``pix2rep pretrain`` prints of a run's progress: notes on stderr, the start
    line, then every ``log_every`` steps the mean loss since the last line, lr and ETA."""
    window: list[float] = []

    def report(p: Progress) -> None:
        if p.stage == "note":
            print(p.message, file=sys.stderr)
        elif p.stage == "start":
            print(p.message, flush=True)
        elif p.stage == "pretrain":
            window.append(p.loss)
            if p.step % log_every == 0 or p.step == p.total:
                print(
                    f"step {p.step}/{p.total}  loss {sum(window) / len(window):.4f}  "
                    f"lr {p.lr:.2e}  {p.rate:.1f} slices/s  ETA {format_duration(p.eta_s)}",
                    flush=True,
                )
                window.clear()

    return report


@sigterm_interrupts
def cmd_pretrain(args: argparse.Namespace) -> int:
    from napari_pix2rep.io.datafiles import is_nifti_path
    from napari_pix2rep.io.dicom_files import is_dicom_file
    from napari_pix2rep.io.outputs import check_output_file, check_outputs
    from napari_pix2rep.jobs import pretrain_job

    if args.init and args.resume:
        raise CliError("Give either --init or --resume, not both.")
    check_output_file(args.out, example="backbone.pt")
    # --resume X --out X continues the run in place; every other input stays untouched
    check_outputs(
        [(args.out, "--out")],
        [*args.data, args.init],
        overwrite=True,
        reads_in_folders=lambda p: is_nifti_path(p) or is_dicom_file(p),
    )
    config = pretrain_config(args)
    # under torchrun rank 0 alone writes, so it alone holds the lock and logs
    lead = os.environ.get("RANK", "0") == "0"
    report = _progress_printer(args.log_every) if lead else lambda p: None
    stop = StopOnSignal()
    keep_free, note = cores_to_leave(args.device)
    job = pretrain_job(
        [],
        args.data,
        args.out,
        config,
        args.device,
        args.init,
        args.exclude,
        stop,
        resume=args.resume,
        lock=lead,
        keep_free=keep_free,
    )
    result = stop.run(job, report, note)
    if stop.requested:
        if lead:
            saved = (
                f"checkpoint saved to {args.out}. Continue with --resume {args.out}."
                if result.path is not None
                else "nothing was saved."
            )
            print(f"Stopped at step {result.steps_done}; {saved}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if lead:
        print(f"Saved {args.out} after {result.steps_done} steps.")
    return 0
