"""Painted work that survives a crash: annotation layers saved to a recovery folder.

The dock (``_qt/autosave.py``) calls :func:`save_recovery` a few seconds after each edit of
an annotation layer; reopening the image lists what is there (:func:`list_recoveries`)
and offers to restore it. A normal save of the layer (the plugin's writer) removes its
entry (:func:`forget_saved`), so only unsaved work is ever offered.

Where: one folder per image under the recovery folder (:func:`default_folder`: the
user's data folder, or ``$NAPARI_PIX2REP_RECOVERY``), named by a digest of the image's
source path; in it one ``<key>.npz`` per annotation layer (``key``: an id the layer
keeps in ``metadata["pix2rep_recovery"]`` while it lives). An entry holds the labels
``(z, y, x)`` / ``(t, z, y, x)`` and a JSON description: the source path, image and layer
names, classes, the background-only slices (flat indices, as
:mod:`napari_pix2rep.annotate.annotations`), when and by which process it was written. Entries
are written with :func:`napari_pix2rep.io.outputs.atomic_write`, so a kill mid-write leaves
the previous entry whole; the user's own label files are never written here.

Imports neither Qt nor torch.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import uuid
import zipfile
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_pix2rep.io.outputs import atomic_write, clean_stale_temps, host_name, pid_alive

#: Environment variable naming another recovery folder (tests, shared machines).
RECOVERY_ENV = "NAPARI_PIX2REP_RECOVERY"
#: Key, in a labels layer's ``metadata``, of its recovery entry: ``{"folder", "key"}``.
RECOVERY_KEY = "pix2rep_recovery"
FORMAT = "napari-pix2rep/recovery"
VERSION = 1
_SUFFIX = ".npz"


class RecoveryError(ValueError):
    """A recovery entry that cannot be used, with one sentence saying why."""


@dataclass(frozen=True)
class Recovery:
    """One recovery entry (its labels are read by :meth:`load`)."""

    path: Path
    key: str
    source_path: str
    image_name: str
    layer_name: str
    classes: tuple[str, ...]
    shape: tuple[int, ...]
    background: frozenset[int]
    saved_at: float
    pid: int
    host: str

    def load(self) -> np.ndarray:
        """The labels, ``shape`` in display order."""
        try:
            with np.load(self.path, allow_pickle=False) as z:
                labels = np.asarray(z["labels"])
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            raise RecoveryError(
                f"The recovered {self.path.name} cannot be read ({exc})."
            ) from None
        if labels.shape != self.shape:
            raise RecoveryError(f"The recovered {self.path.name} holds a different grid.")
        return labels

    def describe(self) -> str:
        """``"ED annotations · patient1 (saved 14:02:31)"``."""
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.saved_at))
        return f"{self.layer_name} (autosaved {when})"

    def live_elsewhere(self) -> bool:
        """True when another process that is still running on this machine wrote it."""
        return self.host == host_name() and self.pid != os.getpid() and pid_alive(self.pid)


def default_folder() -> Path:
    """``$NAPARI_PIX2REP_RECOVERY``, else ``recovery`` in the user's data folder
    (``~/.local/share/napari-pix2rep/recovery`` on Linux)."""
    env = os.environ.get(RECOVERY_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("napari-pix2rep", appauthor=False)) / "recovery"


def new_key() -> str:
    """A fresh entry key (for a layer not yet autosaved)."""
    return uuid.uuid4().hex[:16]


def _source_key(source_path: str | os.PathLike[str]) -> str:
    text = os.path.abspath(os.fspath(source_path))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:20]


def _check_key(key: str) -> str:
    if not key or not all(c.isalnum() or c in "-_" for c in key):
        raise RecoveryError(f"{key!r} is not a recovery key (letters, digits, - and _ only).")
    return key


def image_folder(folder: str | os.PathLike[str], source_path: str | os.PathLike[str]) -> Path:
    """The folder of one image's entries under the recovery ``folder``."""
    return Path(folder) / _source_key(source_path)


def entry_path(
    folder: str | os.PathLike[str], source_path: str | os.PathLike[str], key: str
) -> Path:
    """Where the entry ``key`` of the image read from ``source_path`` lives."""
    return image_folder(folder, source_path) / f"{_check_key(key)}{_SUFFIX}"


def save_recovery(
    folder: str | os.PathLike[str],
    source_path: str | os.PathLike[str],
    key: str,
    labels: np.ndarray,
    *,
    image_name: str,
    layer_name: str,
    classes: Sequence[str],
    background: Collection[int] = (),
    edited_at: float | None = None,
) -> Path | None:
    """Write (atomically) the entry of one annotation layer; returns its path.

    ``labels`` is the layer's data, ``(z, y, x)`` or ``(t, z, y, x)``; ``background`` its
    background-only slices (flat indices). A layer with nothing annotated (all zero, no
    background-only slice) has nothing to recover: its entry is removed, None returned.
    ``edited_at`` (``time.time()`` of the edit these labels hold): when the layer was saved
    normally after that (:func:`forget_saved`), the labels are saved already and nothing is
    written (None).
    Raises :class:`napari_pix2rep.io.outputs.OutputError` when the folder cannot be written.
    """
    labels = np.asarray(labels)
    if labels.ndim not in (3, 4):
        raise RecoveryError(f"Only 3D or 4D labels are autosaved, not shape {labels.shape}.")
    path = entry_path(folder, source_path, key)
    saved = _saved_marker(path)
    if edited_at is not None and saved.is_file():
        try:
            if float(saved.read_text()) >= edited_at:
                return None
        except (OSError, ValueError):
            pass
    saved.unlink(missing_ok=True)
    n_slices = int(np.prod(labels.shape[:-2]))
    flat = sorted(int(i) for i in background if 0 <= int(i) < n_slices)
    if not flat and not labels.any():
        remove_recovery(path)
        return None
    info = {
        "format": FORMAT,
        "version": VERSION,
        "key": key,
        "source_path": os.path.abspath(os.fspath(source_path)),
        "image_name": str(image_name),
        "layer_name": str(layer_name),
        "classes": [str(c) for c in classes],
        "shape": [int(n) for n in labels.shape],
        "background_only": flat,
        "saved_at": time.time(),
        "pid": os.getpid(),
        "host": host_name(),
    }
    buf = io.BytesIO()
    info_bytes = np.frombuffer(json.dumps(info).encode("utf-8"), dtype=np.uint8)
    np.savez_compressed(buf, labels=labels, info=info_bytes)
    data = buf.getvalue()
    return atomic_write(path, lambda fh: fh.write(data))


def _read_info(path: Path) -> dict[str, Any]:
    with np.load(path, allow_pickle=False) as z:
        info = json.loads(bytes(np.asarray(z["info"], dtype=np.uint8)).decode("utf-8"))
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise ValueError("not a recovery entry")
    return info


def read_recovery(path: str | os.PathLike[str]) -> Recovery:
    """The entry at ``path`` (:class:`RecoveryError` when it is not a readable entry)."""
    p = Path(path)
    try:
        info = _read_info(p)
        return Recovery(
            path=p,
            key=str(info["key"]),
            source_path=str(info["source_path"]),
            image_name=str(info["image_name"]),
            layer_name=str(info["layer_name"]),
            classes=tuple(str(c) for c in info["classes"]),
            shape=tuple(int(n) for n in info["shape"]),
            background=frozenset(int(i) for i in info["background_only"]),
            saved_at=float(info["saved_at"]),
            pid=int(info["pid"]),
            host=str(info["host"]),
        )
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        raise RecoveryError(f"{p.name} is not a readable recovery entry ({exc}).") from None


def list_recoveries(
    folder: str | os.PathLike[str], source_path: str | os.PathLike[str]
) -> list[Recovery]:
    """The entries for the image read from ``source_path``, oldest first.

    Unreadable files are skipped (left in place), and temporary files of a write that
    was killed are removed.
    """
    where = image_folder(folder, source_path)
    if not where.is_dir():
        return []
    clean_stale_temps(where)
    wanted = os.path.abspath(os.fspath(source_path))
    found = []
    for p in sorted(where.glob(f"*{_SUFFIX}")):
        try:
            entry = read_recovery(p)
        except RecoveryError:
            continue
        if entry.source_path == wanted:
            found.append(entry)
    return sorted(found, key=lambda e: e.saved_at)


def remove_recovery(path: str | os.PathLike[str]) -> None:
    """Delete one entry (and its image folder once empty); nothing there is fine."""
    p = Path(path)
    p.unlink(missing_ok=True)
    try:
        p.parent.rmdir()
    except OSError:  # not empty, or gone
        pass


def layer_entry(metadata: Mapping[str, Any] | None) -> tuple[Path, str] | None:
    """``(recovery folder, key)`` a layer's ``metadata`` records, else None."""
    info = (metadata or {}).get(RECOVERY_KEY)
    if not isinstance(info, Mapping) or not info.get("folder") or not info.get("key"):
        return None
    return Path(str(info["folder"])), str(info["key"])


def entry_metadata(folder: str | os.PathLike[str], key: str) -> dict[str, str]:
    """The value of ``metadata["pix2rep_recovery"]`` for a layer autosaved as ``key``."""
    return {"folder": os.fspath(folder), "key": _check_key(key)}


def forget_saved(metadata: Mapping[str, Any] | None, source_path: str | None) -> bool:
    """After a normal save of a layer: remove its entry (True when there was one).

    ``metadata`` is the layer's (it names the entry), ``source_path`` its image's file.
    """
    entry = layer_entry(metadata)
    if entry is None or not source_path:
        return False
    try:
        path = entry_path(entry[0], source_path, entry[1])
    except RecoveryError:
        return False
    existed = path.exists()
    remove_recovery(path)
    # an autosave of an edit made before this save, still pending, must not bring it back
    stamp = str(time.time()).encode()
    atomic_write(_saved_marker(path), lambda fh: fh.write(stamp))
    return existed


def _saved_marker(entry: Path) -> Path:
    """Beside an entry: when its layer was last saved normally (``time.time()`` as text)."""
    return entry.with_suffix(".saved")
