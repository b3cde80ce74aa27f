"""Autosave of annotation layers, and the offer to restore them when an image reopens.

:class:`Autosaver` watches the dock's annotation layers (role "annotation", made for an
image read from a file): an edit (a brush stroke, "Use corrections", new data) starts a
single-shot timer, so the layer is saved :data:`DELAY_MS` after its first unsaved edit
and at most that often while painting goes on. The data is copied on the GUI thread (a
few ms) and written by one worker thread (:func:`napari_pix2rep.annotate.recovery.save_recovery`:
compressed, atomic), so painting never waits for the disk. A layer removed with unsaved
edits, and every layer when the dock closes, is saved at once.

When an image is added whose file has entries (from a killed napari, a closed window, or
an annotation layer removed by mistake) that no layer here is writing, the
:class:`RecoveryBar` above the tabs offers *Restore* / *Discard*, and a notification with
a *Restore* button says so; nothing blocks. Restoring adds the annotation layer back with
its classes and background-only slices, keeping the entry until the layer is saved.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import QObject, QTimer, Signal
from qtpy.QtWidgets import QHBoxLayout, QLabel, QPushButton, QWidget

from napari_pix2rep._qt import layers as L
from napari_pix2rep._qt.common import Links, notify_error
from napari_pix2rep.annotate import recovery as R
from napari_pix2rep.annotate.loop import BACKGROUND_KEY, background_of
from napari_pix2rep.core.classes import DEFAULT_CLASSES
from napari_pix2rep.io.errors import error_message
from napari_pix2rep.io.layer_meta import ROLE_KEY, role_metadata, source_path

logger = logging.getLogger(__name__)

#: Time from an edit to its autosave (ms).
DELAY_MS = 2000
_EVENTS = ("paint", "data", "labels_update", "metadata")


class _Watched:
    """One annotation layer being autosaved: its entry key, timer and event hooks."""

    def __init__(self, layer: Any, key: str, timer: QTimer) -> None:
        self.layer = layer
        self.key = key
        self.timer = timer
        self.dirty = False
        self.edited_at: float | None = None  # time.time() of the last edit
        self.callbacks: list[tuple[Any, Any]] = []


class Autosaver(QObject):
    """Autosave the viewer's annotation layers to ``folder`` and offer what is there.

    ``offers_changed`` is emitted whenever the entries offered for restoring change;
    ``saved`` (entry path) after each write, ``failed`` (one sentence) when one fails.
    """

    offers_changed = Signal()
    saved = Signal(str)
    failed = Signal(str)
    _written_removed = Signal()  # a removed layer's last edits are on disk

    def __init__(
        self, viewer: Any, folder: str | os.PathLike[str], links: Links, delay_ms: int = DELAY_MS
    ) -> None:
        super().__init__()
        self.viewer = viewer
        self.folder = Path(folder)
        self.delay_ms = int(delay_ms)
        self.offers: list[tuple[R.Recovery, Any]] = []  # (entry, image layer)
        self._watched: dict[int, _Watched] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pix2rep-autosave")
        self._last_error = ""
        self._closed = False
        self.failed.connect(self._report)
        self._written_removed.connect(self.refresh_offers)
        links.connect(viewer.layers.events.inserted, self._inserted)
        links.connect(viewer.layers.events.removed, self._removed)
        for layer in list(viewer.layers):
            self._track(layer)
        self.refresh_offers()

    # -- autosaving ---------------------------------------------------------------------
    @staticmethod
    def _source(layer: Any) -> str | None:
        return source_path(layer.metadata)

    def _track(self, layer: Any) -> None:
        if not L.is_labels(layer) or L.role(layer) != L.ANNOTATION or layer.ndim not in (3, 4):
            return
        if not self._source(layer) or id(L.unwrap(layer)) in self._watched:
            return
        entry = R.layer_entry(layer.metadata)
        taken = {w.key for w in self._watched.values()}  # a duplicated layer gets its own
        mine = entry is not None and entry[0] == self.folder and entry[1] not in taken
        key = entry[1] if mine else R.new_key()
        layer.metadata[R.RECOVERY_KEY] = R.entry_metadata(self.folder, key)
        timer = QTimer(self)
        timer.setSingleShot(True)
        timer.setInterval(self.delay_ms)
        w = _Watched(L.unwrap(layer), key, timer)
        timer.timeout.connect(lambda: self._flush(w))
        for name in _EVENTS:
            emitter = getattr(layer.events, name)

            def changed(*_: Any, w: _Watched = w) -> None:
                self._changed(w)

            emitter.connect(changed)
            w.callbacks.append((emitter, changed))
        self._watched[id(w.layer)] = w

    def _changed(self, w: _Watched) -> None:
        w.dirty = True
        w.edited_at = time.time()
        if not w.timer.isActive():
            w.timer.start()

    def _flush(self, w: _Watched) -> Future | None:
        """Copy the layer now and write it in the worker (None: nothing to write)."""
        w.timer.stop()
        if not w.dirty or self._closed:
            return None
        w.dirty = False
        layer = w.layer
        data = np.array(layer.data, copy=True)
        background = background_of(layer.metadata, int(np.prod(data.shape[:-2])))
        classes = tuple((layer.metadata.get(ROLE_KEY) or {}).get("classes") or ())
        args = (self.folder, self._source(layer), w.key, data)
        kwargs = {
            "image_name": L.linked_image(self.viewer, layer) or "",
            "layer_name": layer.name,
            "classes": classes,
            "background": background,
            "edited_at": w.edited_at,
        }
        future = self._pool.submit(R.save_recovery, *args, **kwargs)
        future.add_done_callback(self._written)
        return future

    def _written(self, future: Future) -> None:  # in the worker thread
        exc = future.exception()
        if exc is not None:
            logger.warning("autosave failed", exc_info=exc)
            self.failed.emit(f"Autosave failed: {error_message(exc)}")
        elif future.result() is not None:
            self.saved.emit(str(future.result()))

    def _report(self, message: str) -> None:
        if message != self._last_error:  # once, not after every stroke
            self._last_error = message
            notify_error(message)

    def flush_all(self, timeout_s: float = 30.0) -> None:
        """Save every layer with unsaved edits now and wait for the writes."""
        futures = [f for w in list(self._watched.values()) if (f := self._flush(w))]
        for f in futures:
            f.exception(timeout=timeout_s)

    def shutdown(self) -> None:
        """Save what is unsaved, then stop watching (the dock closes)."""
        self.flush_all()
        for w in list(self._watched.values()):
            self._untrack(w)
        self._closed = True
        self._pool.shutdown(wait=True)

    def _untrack(self, w: _Watched) -> None:
        w.timer.stop()
        for emitter, callback in w.callbacks:
            emitter.disconnect(callback)
        self._watched.pop(id(w.layer), None)

    def _inserted(self, event: Any) -> None:
        layer = event.value
        self._track(layer)
        if L.is_image(layer):
            self.refresh_offers()

    def _removed(self, event: Any) -> None:
        w = self._watched.get(id(L.unwrap(event.value)))
        future = self._flush(w) if w is not None else None
        if w is not None:
            self._untrack(w)
        if future is None:
            self.refresh_offers()
        else:  # offer it once written
            future.add_done_callback(lambda _: self._written_removed.emit())

    # -- restoring ----------------------------------------------------------------------
    def refresh_offers(self) -> None:
        """Find the entries of the open images that no layer here is writing."""
        live = {w.key for w in self._watched.values()}
        offers = []
        for image in L.image_layers(self.viewer):
            src = self._source(image)
            if not src:
                continue
            for entry in R.list_recoveries(self.folder, src):
                if entry.key in live or entry.live_elsewhere():
                    continue
                if entry.shape == tuple(image.data.shape):
                    offers.append((entry, image))
        new = [e.path for e, _ in offers if e.path not in {o.path for o, _ in self.offers}]
        self.offers = offers
        self.offers_changed.emit()
        if new:
            self._notify()

    def _notify(self) -> None:
        from napari.utils.notifications import Notification, notification_manager

        n = len(self.offers)
        what = self.offers[0][0].describe() if n == 1 else f"{n} annotation layers"
        note = Notification(
            f"Unsaved annotations were recovered: {what}. Restore them from the Pix2Rep dock "
            "or here.",
            severity="info",
            actions=[("Restore", lambda *_: self.restore_all())],
        )
        notification_manager.dispatch(note)

    def restore(self, entry: R.Recovery, image: Any) -> Any | None:
        """Add the entry back as an annotation layer of ``image``; the new layer."""
        try:
            data = entry.load()
        except R.RecoveryError as exc:
            notify_error(exc)
            return None
        classes = list(entry.classes) or list(DEFAULT_CLASSES)
        meta = role_metadata(image.metadata, L.ANNOTATION, image.name, classes)
        if entry.background:
            meta[BACKGROUND_KEY] = sorted(entry.background)
        meta[R.RECOVERY_KEY] = R.entry_metadata(self.folder, entry.key)
        layer = self.viewer.add_labels(
            data,
            name=entry.layer_name,
            scale=tuple(image.scale),
            translate=tuple(image.translate),
            metadata=meta,
        )
        L.set_classes(layer, classes)
        self.refresh_offers()
        return layer

    def restore_all(self) -> list[Any]:
        """Restore every entry offered now; the new layers."""
        return [ly for e, img in list(self.offers) if (ly := self.restore(e, img)) is not None]

    def discard_all(self) -> None:
        """Delete the entries offered now (the user does not want them)."""
        for entry, _ in self.offers:
            R.remove_recovery(entry.path)
        self.refresh_offers()


class RecoveryBar(QWidget):
    """A line above the dock's tabs while there is work to restore: Restore / Discard."""

    def __init__(self, autosaver: Autosaver, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.autosaver = autosaver
        self.label = QLabel("")
        self.label.setWordWrap(True)
        self.restore_button = QPushButton("Restore")
        self.discard_button = QPushButton("Discard")
        self.restore_button.setToolTip("Add the autosaved annotation layers back")
        self.discard_button.setToolTip("Delete the autosaved copies")
        row = QHBoxLayout(self)
        row.setContentsMargins(2, 2, 2, 2)
        row.addWidget(self.label, 1)
        row.addWidget(self.restore_button)
        row.addWidget(self.discard_button)
        self.restore_button.clicked.connect(lambda: autosaver.restore_all())
        self.discard_button.clicked.connect(lambda: autosaver.discard_all())
        autosaver.offers_changed.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        offers = self.autosaver.offers
        if offers:
            names = "; ".join(e.describe() for e, _ in offers[:3])
            more = f" and {len(offers) - 3} more" if len(offers) > 3 else ""
            self.label.setText(f"Unsaved annotations found: {names}{more}.")
        self.setVisible(bool(offers))
