"""Output files: checked before any work, written atomically, locked, temp files cleaned.

* :func:`check_output_file` / :func:`check_output_dir` run before a command does any
  work: a folder given for a file, a folder that cannot be created or written, is one
  sentence at once, not after an hour of training.
* :func:`atomic_write` writes to a temporary file beside the target (named by
  :func:`temp_path`: ``.<name>.<host>.<pid>.<8 hex>.tmp[.nii[.gz]]``) and renames it onto
  the target; on any failure the temporary file is removed, the previous file is intact,
  and the error (disk full, permission...) is one sentence naming the file.
* :func:`clean_stale_temps` removes temporary files of ours left by a killed run
  (``kill -9``, power loss): those of a process no longer alive on this host, or older
  than :data:`STALE_AFTER_S` (a save takes seconds). Nothing else is ever touched.
* :class:`OutputLock`: one run at a time per output file (``<name>.lock`` beside it,
  holding pid, host and time); a lock whose process is gone is taken over with a note.
* :func:`check_outputs`: the one rule every command's outputs pass against all its
  inputs and the files already there, before any work (see its docstring).

No torch import.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import shutil
import socket
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

from napari_pix2rep.io.errors import error_message

#: A temporary file of ours untouched for this long is stale whoever made it (seconds).
STALE_AFTER_S = 600.0

_TEMP = re.compile(
    r"^\.(?P<target>.+)\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp(\.nii(\.gz)?)?$"
)

_REASONS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "the file system is read-only",
    errno.EISDIR: "it is a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
}


class OutputError(OSError):
    """An output that cannot be written, with one sentence saying which and why."""


def host_name() -> str:
    """This machine's name as used in temp and lock file names (letters, digits, dashes)."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"


def pid_alive(pid: int) -> bool:
    """True when a process with this id runs on this machine (True when unsure)."""
    if pid <= 0:
        return False
    if os.name == "nt":  # os.kill(pid, 0) would signal the process there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    return True


def temp_path(target: str | os.PathLike, suffix: str = "") -> Path:
    """A fresh temporary path beside ``target``: ``.<name>.<host>.<pid>.<hex>.tmp<suffix>``.

    ``suffix`` keeps what a writer needs at the end of the name (``.nii.gz`` for nibabel).
    """
    t = Path(target)
    return t.with_name(f".{t.name}.{host_name()}.{os.getpid()}.{secrets.token_hex(4)}.tmp{suffix}")


def _is_stale(entry: os.DirEntry, now: float, max_age_s: float) -> bool:
    try:
        age = now - entry.stat(follow_symlinks=False).st_mtime
    except OSError:
        return False
    if age > max_age_s:
        return True
    m = _TEMP.match(entry.name)
    return bool(m and m["host"] == host_name() and not pid_alive(int(m["pid"])))


def clean_stale_temps(folder: str | os.PathLike, max_age_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove our stale temporary files from ``folder`` (not recursive); returns them.

    Ours: names made by :func:`temp_path`. Stale: the process that made it is gone (same
    host), or it is older than ``max_age_s`` seconds.
    """
    removed: list[Path] = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not name.startswith(".") or ".tmp" not in name:
            continue
        if not _TEMP.match(name):
            continue
        if entry.is_file(follow_symlinks=False) and _is_stale(entry, now, max_age_s):
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except OSError:
                pass
    return removed


def write_reason(exc: BaseException, folder: str | os.PathLike | None = None) -> str:
    """Why a write failed, as a clause: "the disk is full", "permission denied", ...

    Looks through the exception's chain for an ``OSError`` (torch's writer wraps it in a
    ``RuntimeError``); with none, a nearly full disk (< 16 MiB free) is named as the cause.
    """
    seen: BaseException | None = exc
    first_os: OSError | None = None
    while seen is not None:
        if isinstance(seen, OSError) and not isinstance(seen, OutputError):
            first_os = first_os or seen
            if seen.errno in _REASONS:
                return _REASONS[seen.errno]
        seen = seen.__cause__ or seen.__context__
    if folder is not None:
        try:
            if shutil.disk_usage(folder).free < 16 * 2**20:
                return _REASONS[errno.ENOSPC]
        except OSError:
            pass
    source = first_os or exc
    if isinstance(source, OSError) and source.strerror:
        return source.strerror.strip().rstrip(". ")
    return error_message(source, clause=True)


def atomic_write(
    path: str | os.PathLike,
    write: Callable[[IO[bytes]], object] | Callable[[Path], object],
    suffix: str = "",
    *,
    by_name: bool = False,
) -> Path:
    """Call ``write`` on a temporary file beside ``path``, fsync, rename onto ``path``.

    ``write`` gets the open file (binary), or with ``by_name`` the temporary file's path,
    for writers that open the file themselves (nibabel); ``suffix`` ends that name
    (``.nii.gz``). On any failure (also Ctrl-C) the temporary file is removed and the
    previous ``path`` is left as it was; an ``Exception`` becomes :class:`OutputError`
    naming the file, with the original as its ``__cause__``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"Cannot write {path}: {write_reason(e)}.") from None
    existed = path.is_file()
    tmp = temp_path(path, suffix)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies
        if by_name:
            os.close(fd)
            write(tmp)  # type: ignore[arg-type]
            fd = os.open(tmp, os.O_RDWR)  # Windows cannot fsync a read-only handle
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        else:
            with os.fdopen(fd, "wb") as fh:
                write(fh)  # type: ignore[arg-type]
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if not isinstance(exc, Exception):
            raise
        kept = f"the previous {path.name} is intact" if existed else "nothing was written"
        raise OutputError(
            f"Could not write {path}: {write_reason(exc, path.parent)}; {kept}."
        ) from exc
    return path


def _probe(folder: Path, shown: Path) -> None:
    """Create and remove a temporary file in ``folder``: can we write there at all?"""
    tmp = temp_path(folder / "probe")
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        os.unlink(tmp)
    except OSError as e:
        raise OutputError(f"Cannot write {shown}: {write_reason(e)}.") from None


def _make_folder(folder: Path, shown: Path) -> None:
    """Create ``folder`` (and its parents), or say in one sentence why it cannot be."""
    for above in (folder, *folder.parents):
        if above.exists():
            if not above.is_dir():
                raise OutputError(f"Cannot write {shown}: {above} is a file, not a folder.")
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"Cannot create the folder {folder}: {write_reason(e)}.") from None


def check_output_file(
    path: str | os.PathLike, flag: str = "--out", example: str = "model.pt"
) -> Path:
    """Make sure ``path`` can be written before any work; remove our stale temp files there.

    Creates missing parent folders. Raises :class:`OutputError` when ``path`` is a folder
    (the sentence suggests ``path / example``) or its folder cannot be created or written.
    """
    p = Path(path).expanduser()
    if p.is_dir():
        raise OutputError(f"{flag} {p} is a folder; give a file name, e.g. {p / example}.")
    _make_folder(p.parent, p)
    _probe(p.parent, p)
    clean_stale_temps(p.parent)
    return p


def check_output_dir(path: str | os.PathLike, flag: str = "--out-dir") -> Path:
    """Make sure folder ``path`` exists (created if needed) and is writable, before work."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise OutputError(f"{flag} {p} is a file, not a folder.")
    _make_folder(p, p)
    _probe(p, p)
    clean_stale_temps(p)
    return p


def _is_dicom(path: Path) -> bool:
    from napari_pix2rep.io.dicom_files import is_dicom_file

    return is_dicom_file(path)


def _same_file(a: Path, b: Path) -> bool:
    """One file under two names: the same resolved path, or (links) ``os.path.samefile``."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def _inside(path: Path, folder: Path) -> bool:
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(folder))


def check_outputs(
    outputs: Iterable[tuple[str | os.PathLike, str]],
    inputs: Iterable[str | os.PathLike | None],
    *,
    overwrite: bool,
    reads_in_folders: Callable[[Path], bool] = _is_dicom,
) -> None:
    """The one rule for every command's outputs, checked before any work.

    ``outputs`` are ``(path, flag)`` pairs, the flag naming the option the path comes
    from (``"--out"``, ``"--out-dir"``); ``inputs`` are every file or folder the command
    reads (None entries are skipped). Raises :class:`OutputError`, one sentence, when

    - an output is an input: the same file by resolved path or ``os.path.samefile``
      (hard and symbolic links), or a file under an input folder that the command reads
      there (``reads_in_folders``: DICOM files by default; a DICOM file given stands for
      its series in its folder, so that folder counts too);
    - two outputs are the same file;
    - an output exists and ``overwrite`` is False. Commands pass ``overwrite=True`` for a
      file the user named explicitly (``--out``: replacing it is what was asked), and
      ``--overwrite`` for names they derive (``predict``'s ``<name>_seg.nii.gz``, which may
      be a mask the user drew).
    """
    files, folders = [], []
    for item in inputs:
        if item is None:
            continue
        p = Path(item).expanduser()
        if p.is_dir():
            folders.append(p)
        else:
            files.append(p)
            if p.is_file() and _is_dicom(p):
                folders.append(p.parent)
    seen: list[Path] = []
    for item, flag in outputs:
        out = Path(item).expanduser()
        for f in files:
            if _same_file(out, f):
                same = os.path.abspath(out) == os.path.abspath(f)
                alias = "" if same else f" (the same file as the input {f})"
                raise OutputError(
                    f"{out} is an input and also the output of {flag}{alias}; writing it "
                    f"would replace that input: choose another {flag}."
                )
        if out.is_file():
            for d in folders:
                if _inside(out, d) and reads_in_folders(out):
                    raise OutputError(
                        f"{out} is one of the files read from the input {d} and also the "
                        f"output of {flag}; writing it would replace that input: choose "
                        f"another {flag}."
                    )
        for other in seen:
            if _same_file(out, other):
                raise OutputError(f"Two outputs would be written to the same file {out}.")
        seen.append(out)
        if not overwrite and (out.exists() or out.is_symlink()):
            raise OutputError(
                f"{out} already exists (it may be a file you made); add --overwrite to "
                f"replace it, or choose another {flag}."
            )


class OutputLock:
    """``with OutputLock(path):`` one run at a time writes ``path``.

    The lock is ``<name>.lock`` beside ``path``, created with ``O_CREAT | O_EXCL`` and
    holding ``{"pid", "host", "time"}``. A lock left by a process that is no longer alive
    on this host is taken over (:attr:`note` says so); any other raises
    :class:`OutputError` naming the run that holds it. Released on exit.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.lock = self.path.with_name(self.path.name + ".lock")
        self.note = ""
        self._mine = ""

    def _holder(self) -> dict | None:
        try:
            holder = json.loads(self.lock.read_text())
        except (OSError, ValueError):
            return None
        return holder if isinstance(holder, dict) else None

    def _stale(self, holder: dict | None) -> bool:
        if holder is None:  # unreadable: a lock being written now, or a crash while writing
            try:
                return time.time() - self.lock.stat().st_mtime > 60
            except OSError:
                return True
        try:
            pid = int(holder.get("pid", 0))
        except (TypeError, ValueError):
            return True
        return holder.get("host") == host_name() and not pid_alive(pid)

    def acquire(self) -> OutputLock:
        mine = json.dumps(
            {"pid": os.getpid(), "host": host_name(), "time": time.strftime("%Y-%m-%d %H:%M:%S")}
        )
        for _ in range(2):
            try:
                fd = os.open(self.lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                holder = self._holder()
                if not self._stale(holder):
                    who = (
                        f" (process {holder.get('pid')} on {holder.get('host')} since "
                        f"{holder.get('time')})"
                        if holder
                        else ""
                    )
                    raise OutputError(
                        f"{self.path} is being written by another run{who}; wait for it "
                        f"to finish or choose another output file (if that run is gone, "
                        f"delete {self.lock})."
                    ) from None
                self.note = (
                    f"Took over the stale lock {self.lock.name} (its run, process "
                    f"{holder.get('pid') if holder else '?'}, is no longer running)."
                )
                self.lock.unlink(missing_ok=True)
                continue
            except OSError as e:
                raise OutputError(f"Cannot lock {self.path}: {write_reason(e)}.") from None
            try:
                with os.fdopen(fd, "w") as fh:
                    fh.write(mine)
            except OSError as e:
                self.lock.unlink(missing_ok=True)
                raise OutputError(f"Cannot lock {self.path}: {write_reason(e)}.") from None
            self._mine = mine
            return self
        raise OutputError(f"Cannot lock {self.path}: another run took the lock first.")

    def release(self) -> None:
        """Remove the lock file if it is still ours."""
        if self._mine and self._holder_text() == self._mine:
            self.lock.unlink(missing_ok=True)
        self._mine = ""

    def _holder_text(self) -> str:
        try:
            return self.lock.read_text()
        except OSError:
            return ""

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
