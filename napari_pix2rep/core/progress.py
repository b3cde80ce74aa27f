"""One progress protocol for every long operation: generators that yield :class:`Progress`.

A long operation (pretraining, probe or fine-tune training, prediction of a volume or
of a cine frame by frame, carrying painted slices) is a generator: it yields a
:class:`Progress` after every step and returns its result. Whoever drives it stops it
between two steps either by closing it (``gen.close()``) or, for a job, through the
``should_stop`` :data:`StopCheck` it was given (:func:`until_stopped`); scripts run one
to its end with :func:`run_to_end`. No torch, no Qt.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from typing import TypeVar

__all__ = [
    "Progress",
    "StopCheck",
    "format_duration",
    "never",
    "relabelled",
    "run_to_end",
    "until_stopped",
]

T = TypeVar("T")

#: Asked between steps: True stops the operation there.
StopCheck = Callable[[], bool]


@dataclass
class Progress:
    """One step of a long operation.

    ``stage`` is "loading", "pretrain", "carry", "features", "local-contrast", "probe",
    "finetune", "predict" or "fuse"; ``step`` of ``total`` is done. ``eta_s`` (seconds left),
    ``rate`` (slices per second) and ``lr`` (learning rate) are reported by pretraining
    (``eta_s`` also by fine-tuning).
    """

    stage: str
    step: int
    total: int
    loss: float | None = None
    eta_s: float | None = None
    rate: float | None = None
    lr: float | None = None
    message: str = ""


def never() -> bool:
    """The stop check of an operation nobody stops."""
    return False


def run_to_end(
    gen: Generator[Progress, None, T], progress: Callable[[Progress], None] | None = None
) -> T:
    """Drive ``gen`` to its end, calling ``progress`` at each step; return its value."""
    while True:
        try:
            p = next(gen)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(p)


def until_stopped(
    gen: Generator[Progress, None, T], should_stop: StopCheck
) -> Generator[Progress, None, tuple[bool, T | None]]:
    """Yield ``gen``'s steps, asking ``should_stop()`` after each one.

    Returns ``(False, gen's value)`` when it ran to its end, ``(True, None)`` when it was
    stopped (``gen`` is then closed at that step boundary, so its ``finally`` blocks run).
    """
    while True:
        try:
            p = next(gen)
        except StopIteration as stop:
            return False, stop.value
        yield p
        if should_stop():
            gen.close()
            return True, None


def format_duration(seconds: float | None) -> str:
    """``"m:ss"``, or ``"h:mm:ss"`` from an hour on; ``"?"`` when unknown (None)."""
    if seconds is None:
        return "?"
    seconds = int(round(max(0.0, float(seconds))))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def relabelled(gen: Generator[Progress, None, T], message: str) -> Generator[Progress, None, T]:
    """``gen``'s steps with their ``message`` replaced, and its value; closing it closes
    ``gen``."""
    try:
        while True:
            try:
                p = next(gen)
            except StopIteration as stop:
                return stop.value
            yield replace(p, message=message)
    finally:
        gen.close()
