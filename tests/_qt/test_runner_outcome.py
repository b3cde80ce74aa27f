"""The outcome is the runner's last word: no progress signal after ``done`` / ``failed``."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

pytest.importorskip("qtpy")


def _record(runner) -> list[tuple[str, object]]:
    events: list[tuple[str, object]] = []
    runner.progress.connect(lambda p, _losses: events.append(("progress", p.step)))
    runner.done.connect(lambda r: events.append(("done", r)))
    runner.failed.connect(lambda m: events.append(("failed", m)))
    return events


def _fast_job(n: int, *, should_stop, fail: bool = False):
    """``n`` progress reports faster than the throttle lets through, then a result."""
    for step in range(1, n + 1):
        if should_stop():
            return "cancelled"
        yield SimpleNamespace(step=step, total=n, stage="probe", loss=None)
    if fail:
        raise ValueError("The job went wrong.")
    return "finished"


def _endless_job(*, should_stop):
    step = 0
    while not should_stop():
        step += 1
        yield SimpleNamespace(step=step, total=10**6, stage="pretrain", loss=0.5)
    return "cancelled"


@pytest.mark.parametrize("fail", [False, True])
def test_outcome_is_the_last_signal(qtbot, fail):
    from napari_pix2rep._qt.runner import JobRunner

    runner = JobRunner("test")
    events = _record(runner)
    runner.start(_fast_job, 40, fail=fail)
    qtbot.waitUntil(lambda: not runner.running, timeout=30_000)
    qtbot.wait(300)  # longer than the throttle interval: a held-back report would show now
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == ("failed" if fail else "done"), events[-4:]
    assert kinds.count("done") + kinds.count("failed") == 1
    # the report held back by the throttle was sent before the outcome, not dropped
    assert ("progress", 40) in events
    assert events[-1][1] == ("The job went wrong." if fail else "finished")


def test_no_progress_after_a_cancel(qtbot):
    from napari_pix2rep._qt.runner import JobRunner

    runner = JobRunner("test")
    events = _record(runner)
    runner.start(_endless_job)
    qtbot.waitUntil(lambda: ("progress", 1) in events or len(events) > 1, timeout=30_000)
    runner.stop()
    qtbot.waitUntil(lambda: not runner.running, timeout=30_000)
    qtbot.wait(300)
    assert events[-1] == ("done", "cancelled"), events[-4:]
    assert [kind for kind, _ in events].count("done") == 1
