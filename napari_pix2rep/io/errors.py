"""An exception as the one sentence a notification or the CLI shows (no traceback).

Imports neither Qt nor torch.
"""

from __future__ import annotations

import re

from napari_pix2rep.io.nifti_limits import format_bytes


def _first_line(text: str) -> str:
    text = text.strip()
    return text.splitlines()[0].strip() if text else ""


_OOM_WORDS = ("out of memory", "not enough memory", "allocate memory", "unable to allocate")
# "MB" in PyTorch's messages is MiB too
_ASKED = re.compile(r"allocate\s+([\d.]+)\s*(bytes|([KMGTPE])i?B)\b", re.IGNORECASE)


def out_of_memory(exc: BaseException) -> str | None:
    """``"ran out of memory (1.0 TiB was asked for)"`` when ``exc`` is an out-of-memory
    error (MemoryError, CUDA/MPS OutOfMemoryError, PyTorch's CPU allocator), else None."""
    text = _first_line(str(exc))
    if not (
        isinstance(exc, MemoryError)
        or type(exc).__name__ == "OutOfMemoryError"
        or any(w in text.lower() for w in _OOM_WORDS)
    ):
        return None
    asked = _ASKED.search(text)
    if asked is None:
        return "ran out of memory"
    n_bytes = float(asked[1]) * 1024 ** (" KMGTPE".index(asked[3].upper()) if asked[3] else 0)
    return f"ran out of memory ({format_bytes(n_bytes)} was asked for)"


#: What the dock says when the device runs out of memory (``{oom}``: :func:`out_of_memory`).
OOM_HINT = "The device {oom}: use a smaller preset or batch size, or choose the CPU."


def error_message(
    exc: BaseException, *, clause: bool = False, oom: str = OOM_HINT, limit: int = 300
) -> str:
    """An exception as one sentence for a notification or the CLI (no traceback).

    The sentence is the message's first line, cut to ``limit`` characters, ending in a
    full stop. An out-of-memory error becomes ``oom`` with ``{oom}`` filled in by
    :func:`out_of_memory` (callers give their own advice there). Other than library
    errors (``ValueError``, ``OSError``: AnnotationError, ModelFileError, NiftiError...,
    which read as sentences already) the type is named, for the bug report.

    ``clause=True`` gives the part that sits inside another sentence ("cannot be read
    (<clause>)"): the first line without its final full stop, or the type's name when the
    message is empty; no type prefix and no out-of-memory advice.
    """
    text = _first_line(str(exc))
    name = type(exc).__name__
    if clause:
        return text[:limit].rstrip(". ") or name
    found = out_of_memory(exc)
    if found is not None:
        return oom.format(oom=found)
    if isinstance(exc, KeyError):
        text = f"missing entry {text}"
    if not text:
        text = name
    elif not isinstance(exc, ValueError | OSError | FloatingPointError):
        text = f"{name}: {text}"
    if len(text) > limit:
        text = text[: limit - 3].rstrip() + "..."
    return text if text.endswith((".", "!", "?")) else text + "."
