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


def error_message(exc: BaseException) -> str:
    """An exception as one sentence for a notification (no traceback)."""
    text = _first_line(str(exc))
    name = type(exc).__name__
    oom = out_of_memory(exc)
    if oom is not None:
        return f"The device {oom}: use a smaller preset or batch size, or choose the CPU."
    if isinstance(exc, KeyError):
        text = f"missing entry {text}"
    if not text:
        text = name
    elif not isinstance(exc, ValueError | OSError | FloatingPointError):
        # library errors (AnnotationError, ModelFileError, NiftiError are ValueErrors)
        # already read as sentences; anything else gets its type for the bug report
        text = f"{name}: {text}"
    if len(text) > 300:
        text = text[:297].rstrip() + "..."
    return text if text.endswith((".", "!", "?")) else text + "."
