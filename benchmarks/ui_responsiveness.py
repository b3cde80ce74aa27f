"""How responsive the napari window stays while the dock works.

A 10 ms ``QTimer`` on the GUI thread records its ticks from the moment a job is started
from the dock until its result is in the layers (plus a short tail); the gaps between
ticks are what a user feels as a frozen window. Jobs, at small sizes: Segment (linear
probe on 2 painted slices, then every slice), Fine-tune (a short fine-tune, then every
slice) and Pretrain (a short ``tiny`` run). Each runs idle and with ``--load`` CPU-bound
busy-loop processes beside it. ``--stacks`` prints what the threads were doing during
gaps longer than 50 ms (to find what holds the GUI thread).

    python benchmarks/ui_responsiveness.py [--load 1] [--quick] [--stacks] [--window 1600x1000]

Writes ``ui_responsiveness.json`` / ``.md`` into ``--out``. Needs a display (Xvfb is
fine). Numbers depend on what else the machine runs: note the load average printed.
"""

from __future__ import annotations

import argparse
import collections
import faulthandler
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from common import REPO, table, write_results

from napari_pix2rep.evaluation.phantom import make_phantom

JOBS = ("segment", "finetune", "pretrain")
GAP_MS = 50  # gaps longer than this get their stacks sampled (--stacks)


def busy_loops(n: int) -> list[subprocess.Popen]:
    """``n`` CPU-bound processes (a Python busy loop each), to stand for other work."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def gap_stats(ticks: list[float]) -> dict:
    """Max, p99 and median gap (ms) between consecutive ticks (seconds)."""
    gaps = np.diff(np.asarray(ticks)) * 1000
    if gaps.size == 0:
        return {"max_ms": float("nan"), "p99_ms": float("nan"), "median_ms": float("nan")}
    return {
        "max_ms": float(gaps.max()),
        "p99_ms": float(np.percentile(gaps, 99)),
        "median_ms": float(np.median(gaps)),
        "gaps_over_100ms": int((gaps > 100).sum()),
        "ticks": int(gaps.size + 1),
    }


def thread_stacks() -> dict[int, list[str]]:
    """Every other thread's innermost frames (``file:line function``, innermost first).

    Read through ``faulthandler``'s text dump, which holds no reference to the frames:
    keeping another thread's frame alive (``sys._current_frames``) can make its Qt
    objects (a QPainter mid-paint) die in this thread and crash the process.
    """
    with tempfile.TemporaryFile("w+") as fh:
        faulthandler.dump_traceback(fh, all_threads=True)
        fh.seek(0)
        text = fh.read()
    stacks: dict[int, list[str]] = {}
    current = None
    for line in text.splitlines():
        head = re.match(r"(Current thread|Thread) (0x[0-9a-f]+)", line)
        if head:
            current = None if head.group(1) == "Current thread" else int(head.group(2), 16)
            if current is not None:
                stacks[current] = []
            continue
        frame = re.match(r'\s+File "(.+)", line (\d+) in (\S+)', line)
        if frame and current is not None:
            stacks[current].append(
                f"{Path(frame.group(1)).name}:{frame.group(2)} {frame.group(3)}"
            )
    return stacks


class StackSampler(threading.Thread):
    """Samples every thread's stack each 5 ms while the GUI thread's timer has not
    ticked for more than ``GAP_MS``; ``top()`` counts the innermost frames (a count is
    about 5 ms of a long gap)."""

    def __init__(self, ticks: list[float]) -> None:
        super().__init__(daemon=True)
        self.ticks, self.stop = ticks, threading.Event()
        self.main = threading.main_thread().ident
        self.samples: collections.Counter = collections.Counter()

    def run(self) -> None:
        while not self.stop.wait(0.005):
            last = self.ticks[-1] if self.ticks else None
            if last is None or time.perf_counter() - last < GAP_MS / 1e3:
                continue
            for ident, frames in thread_stacks().items():
                who = "GUI" if ident == self.main else "worker"
                self.samples[f"{who}: {' < '.join(frames[:4])}"] += 1

    def top(self, n: int = 12) -> list[tuple[str, int]]:
        return self.samples.most_common(n)


def _scene(viewer, dock, size: tuple[int, ...]):
    """A phantom image (3D ``(z, y, x)`` or a 4D cine ``(t, z, y, x)``) with 2 painted
    slices (the truth; of the first frame of a cine) in an annotation layer."""
    *frames, n_slices, h, w = size
    ph = make_phantom(
        n_slices=n_slices, size=(h, w), n_frames=frames[0] if frames else None, seed=3
    )
    image = viewer.add_image(ph.image, name="scan", scale=ph.spacing)
    panel = dock.segment_panel
    panel.refresh_layers()
    panel.image_combo.setCurrentText("scan")
    ann = panel.new_annotation_layer()
    lead = (0,) if frames else ()
    for z in (n_slices // 3, (2 * n_slices) // 3):
        ann.data[(*lead, z)] = ph.labels[(*lead, z)]
    ann.refresh()
    dock.pretrain_panel.refresh_layers()
    return image


def _start(dock, job: str, quick: bool, work: Path) -> object:
    """Start ``job`` from the dock's panels; returns the runner to wait for."""
    seg, pre = dock.segment_panel, dock.pretrain_panel
    if job in ("segment", "finetune"):
        seg.set_mode("linear" if job == "segment" else "finetune")
        seg.steps_spin.setValue(20 if quick else (100 if job == "segment" else 40))
        seg.crop_spin.setValue(64)
        if not seg.segment():
            raise SystemExit(f"{job} did not start")
        return seg.runner
    pre.set_checked_layers(["scan"])
    pre.folder_edit.setText("")
    pre.preset_combo.setCurrentText("tiny")
    pre.init_check.setChecked(False)
    pre.steps_spin.setValue(10 if quick else 40)
    pre.out_edit.setText(str(work / "pretrained.pt"))
    if not pre.start({"crop": 64, "batch_size": 4, "checkpoint_every": 10_000}):
        raise SystemExit("pretraining did not start")
    return pre.runner


def measure(dock, job: str, quick: bool, work: Path, stacks: bool) -> tuple[dict, list]:
    """Gap statistics of one job, from the return of the Start handler until its result
    is shown (+300 ms); ``click_ms`` is the handler's own time (the first Segment of an
    image adds its segmentation layer then), ``max_with_click_ms`` includes it."""
    from qtpy.QtCore import QEventLoop, Qt, QTimer

    ticks: list[float] = []
    timer = QTimer()
    timer.setTimerType(Qt.PreciseTimer)
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    loop = QEventLoop()
    timer.start()
    QTimer.singleShot(200, loop.quit)  # settle: the timer ticks before the job starts
    loop.exec()
    sampler = StackSampler(ticks)
    if stacks:
        sampler.start()
    t0 = time.perf_counter()
    runner = _start(dock, job, quick, work)
    t_click = time.perf_counter()  # the Start handler has returned

    def ended(running: bool) -> None:
        if not running:
            QTimer.singleShot(300, loop.quit)

    runner.running_changed.connect(ended)
    loop.exec()
    runner.running_changed.disconnect(ended)
    seconds = time.perf_counter() - t0
    timer.stop()
    sampler.stop.set()
    stats = gap_stats([t for t in ticks if t >= t_click])
    whole = gap_stats([t for t in ticks if t >= t0 - 0.011])
    return {
        "job": job,
        "seconds": seconds,
        "click_ms": 1000 * (t_click - t0),
        "max_with_click_ms": whole["max_ms"],
        **stats,
    }, sampler.top()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="Backbone for Segment (default: shipped).")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    p.add_argument("--load", type=int, default=1, help="Busy-loop processes in the loaded runs.")
    p.add_argument("--jobs", default=",".join(JOBS))
    p.add_argument(
        "--size", default="10,192,192", help="[frames,] slices, height, width of the image."
    )
    p.add_argument("--quick", action="store_true", help="Smoke mode: tiny and fast.")
    p.add_argument("--stacks", action="store_true", help="Print what ran during long gaps.")
    p.add_argument(
        "--window",
        default="",
        help="Window size WxH (default napari's); at 1600x1000 the dock's progress bar is "
        "on screen, so its repaints count.",
    )
    args = p.parse_args()
    size = (6, 96, 96) if args.quick else tuple(int(v) for v in args.size.split(","))
    jobs = [j for j in args.jobs.split(",") if j]
    work = Path(tempfile.mkdtemp(prefix="pix2rep-ui-"))  # settings, pretrained file

    import napari
    from qtpy.QtCore import QEventLoop
    from qtpy.QtWidgets import QApplication

    from napari_pix2rep._qt.dock import Pix2RepDock
    from napari_pix2rep._qt.runner import WARM

    os.environ["NAPARI_PIX2REP_SETTINGS"] = str(work / "settings.ini")
    viewer = napari.Viewer(show=True)
    dock = Pix2RepDock(viewer)
    viewer.window.add_dock_widget(dock, name="Pix2Rep", area="right")
    if args.window:
        viewer.window.resize(*(int(v) for v in args.window.lower().split("x")))
    if args.model:
        dock.model_box.set_path(args.model)
    dock.model_box.device_combo.setCurrentText("cpu")
    _scene(viewer, dock, size)
    while not WARM.is_set():  # the dock's background import of the training modules
        QApplication.processEvents(QEventLoop.AllEvents, 50)

    model = dock.model_box.path  # a finished pretraining run becomes the model: undo that
    rows, runs = [], []
    for load in (0, args.load) if args.load else (0,):
        procs = busy_loops(load)
        try:
            time.sleep(0.5 if load else 0)
            for job in jobs:
                loadavg = os.getloadavg()[0]
                result, top = measure(dock, job, args.quick, work, args.stacks)
                dock.model_box.set_path(model)
                result.update(busy_processes=load, loadavg_1min=loadavg)
                runs.append(result)
                rows.append(
                    [
                        job,
                        str(load),
                        f"{result['click_ms']:.0f}",
                        f"{result['max_ms']:.0f}",
                        f"{result['p99_ms']:.0f}",
                        f"{result['median_ms']:.1f}",
                        f"{result['seconds']:.1f}",
                        f"{loadavg:.1f}",
                    ]
                )
                if args.stacks and top:
                    print(f"\n{job}, {load} busy: threads during gaps > {GAP_MS} ms")
                    for where, count in top:
                        print(f"  {count:3d}  {where}")
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()
    dock.shutdown(60)
    viewer.close()
    markdown = (
        f"GUI-thread gaps of a 10 ms QTimer while the dock works (image {size}, "
        f"{os.cpu_count()} CPUs, window {args.window or 'default'}); click: the Start "
        "handler, then max / p99 / median gap until the result is shown\n\n"
        + table(
            [
                "job",
                "busy processes",
                "click ms",
                "max ms",
                "p99 ms",
                "median ms",
                "seconds",
                "load avg",
            ],
            rows,
        )
    )
    write_results(
        args.out, "ui_responsiveness", {"image_shape": list(size), "runs": runs}, markdown
    )


if __name__ == "__main__":
    main()
