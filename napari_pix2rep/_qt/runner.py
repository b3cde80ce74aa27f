"""Run one long job at a time in a napari worker thread, with stop, pause and tidy errors.

A job is a generator function from :mod:`napari_pix2rep.jobs`: it yields progress, checks
the ``should_stop`` callable it is given between steps and returns a result. The runner
turns what it yields into a throttled ``progress`` signal (the GUI thread is never flooded),
its return value into ``done`` and any exception into ``failed`` with one sentence. The
outcome is the last word: a progress report still held back by the throttle is sent before
``done`` / ``failed``, and nothing after them. Nothing here touches the viewer.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Generator
from typing import Any

from qtpy.QtCore import QObject, QTimer, Signal

from napari_pix2rep.io.errors import error_message

logger = logging.getLogger(__name__)

#: Shortest interval between two progress signals (ms): 4 GUI updates a second at most
#: (each repaints the window: ~17 ms with a software OpenGL canvas on a 2-core CPU).
PROGRESS_INTERVAL_MS = 250

#: Every runner alive, so that quitting the application can stop their jobs.
_RUNNERS: weakref.WeakSet = weakref.WeakSet()
#: set once the torch modules the jobs need are imported (see :func:`warm_up`)
WARM = threading.Event()
_warm_started = threading.Lock()  # held for good by the first warm_up()


def _import_job_modules() -> None:
    try:
        import torch

        from napari_pix2rep import jobs  # noqa: F401
        from napari_pix2rep.pretrain import run  # noqa: F401
        from napari_pix2rep.segment import predict, training  # noqa: F401

        # the first optimiser imports torch._dynamo: a long, GIL-heavy import
        torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    except Exception:  # the job itself reports any real problem
        logger.debug("warm-up import failed", exc_info=True)
    finally:
        WARM.set()


def warm_up() -> None:
    """Import the training modules in the background, once per process, when the dock
    opens: done later, on the first Start, the import would hold the GIL for a few
    hundred milliseconds and freeze the window (measured ~300 ms on a 2-core CPU)."""
    if _warm_started.acquire(blocking=False):
        threading.Thread(target=_import_job_modules, name="pix2rep-warm-up", daemon=True).start()


def shutdown_all(timeout_s: float = 120.0) -> None:
    """Stop every running job and wait for each (connected to ``aboutToQuit``)."""
    for runner in list(_RUNNERS):
        runner.shutdown(timeout_s)


def _run_job(
    job: Callable[..., Generator], args: tuple, kwargs: dict, finished: threading.Event
) -> Generator[Any, None, tuple[str, Any]]:
    """The worker's generator: the job, with its exception turned into a return value."""
    try:
        result = yield from job(*args, **kwargs)
        return ("ok", result)
    except Exception as exc:  # reported as one sentence by the runner, never re-raised
        logger.warning("napari-pix2rep job failed", exc_info=exc)
        return ("error", exc)
    finally:
        finished.set()


class JobRunner(QObject):
    """One job at a time: ``start``, ``stop`` (at the next step), ``pause``/``resume``."""

    #: (latest progress, losses reported since the previous signal)
    progress = Signal(object, object)
    #: the job's return value (also when it was stopped: results say so)
    done = Signal(object)
    #: one sentence
    failed = Signal(str)
    #: True when a job starts, False when it has ended (after ``done``/``failed``)
    running_changed = Signal(bool)
    paused_changed = Signal(bool)

    def __init__(self, name: str = "job") -> None:
        super().__init__()
        self.name = name
        self.worker = None
        self.last = None  # the most recent progress (unthrottled)
        self._unsent = False  # ``last`` has not been emitted yet
        self._ended = False  # done / failed was emitted: no progress after it
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._finished.set()
        self._pending_losses: list[float] = []
        self._last_emit = 0.0
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._flush)
        _RUNNERS.add(self)

    # -- state ------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.worker is not None

    @property
    def paused(self) -> bool:
        return self.worker is not None and bool(getattr(self.worker, "is_paused", False))

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    # -- control ----------------------------------------------------------------------
    def start(self, job: Callable[..., Generator], *args: Any, **kwargs: Any) -> None:
        """Run ``job(*args, should_stop=..., **kwargs)`` in a worker thread."""
        from napari.qt.threading import create_worker

        if self.running:
            raise RuntimeError(f"A {self.name} job is already running.")
        self._stop = threading.Event()
        self._finished = threading.Event()
        self.last = None
        self._unsent, self._ended = False, False
        self._pending_losses = []
        self._last_emit = 0.0
        kwargs["should_stop"] = self._stop.is_set
        worker = create_worker(_run_job, job, args, kwargs, self._finished, _start_thread=False)
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(self._on_returned)
        worker.finished.connect(self._on_finished)
        worker.paused.connect(lambda: self.paused_changed.emit(True))
        worker.resumed.connect(lambda: self.paused_changed.emit(False))
        self.worker = worker
        self.running_changed.emit(True)
        worker.start()

    def stop(self) -> bool:
        """Ask the job to stop at its next step boundary (it still returns a result)."""
        if self.worker is None:
            return False
        self._stop.set()
        if self.worker.is_paused:
            self.worker.resume()
        return True

    def pause(self) -> None:
        if self.worker is not None:
            self.worker.pause()

    def resume(self) -> None:
        if self.worker is not None:
            self.worker.resume()

    def shutdown(self, timeout_s: float = 60.0) -> bool:
        """Stop the job and wait (blocking) until its thread has left it; True if it did.

        Used when the dock or napari closes: the job ends at a step boundary in its own
        thread, so files it writes are complete (they are also written atomically).
        """
        if self.worker is None:
            return True
        self.stop()
        ok = self._finished.wait(timeout_s)
        if not ok:
            logger.warning(
                "napari-pix2rep: the %s job did not stop within %s s", self.name, timeout_s
            )
        return ok

    # -- worker signals (GUI thread) ---------------------------------------------------
    def _on_yielded(self, value: Any) -> None:
        if self._ended:
            return
        self.last = value
        self._unsent = True
        loss = getattr(value, "loss", None)
        if loss is not None and getattr(value, "stage", "") == "pretrain":
            self._pending_losses.append(float(loss))
        wait = PROGRESS_INTERVAL_MS - (time.monotonic() - self._last_emit) * 1000
        if wait <= 0:
            self._flush()
        elif not self._timer.isActive():
            self._timer.start(int(wait) + 1)

    def _flush(self) -> None:
        self._timer.stop()
        if not self._unsent or self._ended:
            return
        self._unsent = False
        losses, self._pending_losses = self._pending_losses, []
        self._last_emit = time.monotonic()
        self.progress.emit(self.last, losses)

    def _on_returned(self, value: Any) -> None:
        self._flush()
        self._ended = True
        status, payload = value
        if status == "ok":
            self.done.emit(payload)
        else:
            self.failed.emit(error_message(payload))

    def _on_finished(self) -> None:
        self._timer.stop()  # the outcome (done / failed) has been said: no progress after it
        self.worker = None
        self.running_changed.emit(False)
