"""What every ``pix2rep`` command shares: errors, exit codes, signals, repeated options.

Ctrl-C and SIGTERM while a job runs (:meth:`StopOnSignal.run`) ask it to stop at the next
step boundary (a second one aborts at once); outside a job (reading, writing) SIGTERM
interrupts like Ctrl-C (:func:`sigterm_interrupts`). Either way the command exits 130,
its temporary files removed and the files already saved intact.
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
import threading
from collections.abc import Callable, Generator
from typing import TypeVar

from napari_pix2rep.core.choices import PROBE_HEADS
from napari_pix2rep.core.progress import Progress, run_to_end

T = TypeVar("T")

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130

DEVICES = ("auto", "cpu", "cuda", "mps")


#: The end of every ``--labels`` help: the background-only sidecar (docs/annotations.md).
SIDECAR_HELP = (
    "Its LAB.slices.json sidecar, when there is one, lists background-only slices "
    "(docs/annotations.md)."
)


class CliError(Exception):
    """An error whose message is shown to the user as is."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the command stops where it is, its temporary files are
    removed, files already saved stay intact, and it exits 130 with a sentence."""


def sigterm_interrupts(cmd: Callable[[argparse.Namespace], int]):
    """Run a command with SIGTERM raising :class:`Terminated` (the default would kill the
    process on the spot); the previous handler is restored afterwards."""

    @functools.wraps(cmd)
    def run(args: argparse.Namespace) -> int:
        if threading.current_thread() is not threading.main_thread():
            return cmd(args)

        def handle(signum, frame) -> None:
            raise Terminated

        previous = signal.signal(signal.SIGTERM, handle)
        try:
            return cmd(args)
        finally:
            signal.signal(signal.SIGTERM, previous)

    return run


class StopOnSignal:
    """The ``should_stop`` of a job the CLI runs: True once Ctrl-C or SIGTERM came.

    The first signal asks the job to stop at the next step boundary; a second aborts at
    once (:class:`KeyboardInterrupt`, or :class:`Terminated` for SIGTERM).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False

    def __call__(self) -> bool:
        return self.requested

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt
        self.requested = True
        print("\nStopping after this step (Ctrl-C again to abort at once)...", file=sys.stderr)

    def run(
        self,
        job: Generator[Progress, None, T],
        report: Callable[[Progress], None] | None = None,
        note: str | None = None,
    ) -> T:
        """Drive ``job`` to its end (``report`` sees each step) with the signals asking it
        to stop; the previous handlers are restored afterwards. ``note`` goes to stderr
        when computing starts (the first step past loading, after the input checks, so an
        error stays one sentence)."""
        if note:
            report = _noting(report, note)
        if threading.current_thread() is not threading.main_thread():
            return run_to_end(job, report)
        previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        try:
            return run_to_end(job, report)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


def _noting(report: Callable[[Progress], None] | None, note: str) -> Callable[[Progress], None]:
    said = []

    def first_says(p: Progress) -> None:
        if not said and p.stage not in ("loading", "note"):  # computing starts
            print(note, file=sys.stderr, flush=True)
            said.append(True)
        if report is not None:
            report(p)

    return first_says


def cores_to_leave(device: str) -> tuple[int | None, str | None]:
    """``keep_free`` for a CLI job on ``device`` (:func:`~napari_pix2rep.model.threads.busy_cores`)
    and, when other processes keep cores busy, the note saying how many threads it gets
    (for :meth:`StopOnSignal.run`)."""
    from napari_pix2rep.model.device import resolve_device
    from napari_pix2rep.model.threads import busy_cores, cpu_count

    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average on this OS
        load = 0.0
    keep = busy_cores(load=load)
    try:
        on_cpu = resolve_device(device).type == "cpu"
    except ValueError:  # the job says which devices there are
        on_cpu = False
    if not (keep and on_cpu):
        return keep, None
    n = cpu_count() - keep
    note = (
        f"The machine is busy (load {load:.1f} on {cpu_count()} cores): computing on "
        f"{n} thread{'s' if n > 1 else ''} (set OMP_NUM_THREADS to choose)."
    )
    return keep, note


# -- options several commands take ---------------------------------------------------------
def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", choices=DEVICES)


def add_json(p: argparse.ArgumentParser, help: str | None = None) -> None:
    p.add_argument("--json", action="store_true", help=help)


def add_seed(p: argparse.ArgumentParser, default: int | None, help: str | None = None) -> None:
    p.add_argument("--seed", type=int, default=default, help=help)


def add_training_flags(p: argparse.ArgumentParser) -> None:
    """How a segmenter learns from painted slices (``pix2rep train`` and ``segment``):
    ``--mode``, ``--steps``, ``--probe-head`` and the ``--seed``; read by
    :func:`training_flags`."""
    p.add_argument("--mode", choices=("linear", "finetune"), default="linear")
    add_seed(p, 0)
    p.add_argument(
        "--steps", type=int, default=None, help="Optimisation steps (probe: 300, fine-tune: 300)."
    )
    p.add_argument(
        "--probe-head",
        choices=PROBE_HEADS,
        default=None,
        help="What the linear probe on a backbone reads: its 64-channel output (linear, "
        "the default) or every level of the U-Net (hypercolumn: more DICE, worse LV EF "
        "on the validation patients; docs/benchmarks.md).",
    )


def training_flags(args: argparse.Namespace) -> dict:
    """The :class:`~napari_pix2rep.segment.train_config.TrainConfig` fields that
    :func:`add_training_flags`'s flags set."""
    training = {"mode": args.mode, "seed": args.seed}
    if args.steps:
        training |= {"probe_steps": args.steps, "ft_steps": args.steps}
    if args.probe_head is not None:
        training["probe_head"] = args.probe_head
    return training
