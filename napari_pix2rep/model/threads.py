"""How many CPU threads torch may use while a job runs.

The dock keeps one core free for the window (:func:`cpu_threads` with ``keep_free=1``).
The CLI leaves the count to the user when they chose it (``OMP_NUM_THREADS`` or
``MKL_NUM_THREADS``) and otherwise keeps free the cores other processes already keep busy
(:func:`busy_cores`): on a busy 2-core machine torch's two threads would compete with the
other processes for the cores, and a fine-tune that takes two minutes idle took nine. No
torch import at module level.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

__all__ = ["busy_cores", "cpu_count", "cpu_threads"]

USER_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def cpu_count() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells it), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def busy_cores(
    cpus: int | None = None,
    load: float | None = None,
    env: Mapping[str, str] | None = None,
) -> int | None:
    """Cores to leave to other processes, for the CLI; None when the user chose a count.

    ``load`` is the one-minute load average (read from the OS when None; measured before
    this process starts computing, so it counts the others). Rounded to whole cores and at
    most ``cpus - 1``, so at least one thread always runs: an idle machine gives 0 (every
    core), a 2-core machine with a load of 3.7 gives 1 (one thread).
    """
    env = os.environ if env is None else env
    if any(env.get(v, "").strip() for v in USER_THREAD_VARIABLES):
        return None
    cpus = cpu_count() if cpus is None else max(1, cpus)
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):  # no load average on this OS
            return 0
    return int(min(max(0, round(load)), cpus - 1))


@contextmanager
def cpu_threads(device: Any, keep_free: int | None = 1) -> Iterator[None]:
    """On the CPU, let torch use all cores but ``keep_free`` while the block runs.

    Call it in the thread that computes (torch's OpenMP thread count is per thread). The
    previous count is restored afterwards. No effect on accelerators, nor with
    ``keep_free=None`` (the thread count stays the user's, e.g. OMP_NUM_THREADS).
    """
    import torch

    if keep_free is None or getattr(device, "type", str(device)) != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, cpu_count() - keep_free))
    try:
        yield
    finally:
        torch.set_num_threads(before)
