"""Small pieces shared by the dock's panels: event links, notifications, time format."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from napari_pix2rep.io.errors import error_message


class Links:
    """napari event connections made by the dock, disconnected when the dock goes away."""

    def __init__(self) -> None:
        self._pairs: list[tuple[Any, Callable]] = []

    def connect(self, emitter: Any, callback: Callable) -> None:
        emitter.connect(callback)
        self._pairs.append((emitter, callback))

    def disconnect_all(self) -> None:
        for emitter, callback in self._pairs:
            try:
                emitter.disconnect(callback)
            except Exception:  # the emitter's owner may be gone already
                pass
        self._pairs = []


def compact_combo(combo: Any, chars: int = 12) -> Any:
    """A combo box that does not grow to its longest item (layer names can be long)."""
    from qtpy.QtWidgets import QComboBox

    combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(chars)
    return combo


def notify_error(exc_or_message: BaseException | str) -> str:
    """Show one sentence as a napari error notification; returns it."""
    from napari.utils.notifications import show_error

    text = exc_or_message if isinstance(exc_or_message, str) else error_message(exc_or_message)
    show_error(text)
    return text


def notify_info(message: str) -> None:
    from napari.utils.notifications import show_info

    show_info(message)


def refill_combo(combo: Any, names: list[str]) -> None:
    """Replace a combo box's items, keeping the current one when still there (no signals)."""
    current = combo.currentText()
    combo.blockSignals(True)
    combo.clear()
    combo.addItems(names)
    if current in names:
        combo.setCurrentText(current)
    combo.blockSignals(False)
