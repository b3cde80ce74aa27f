"""Dock settings remembered between launches (QSettings).

Stored in the platform's usual place under "napari-pix2rep"; the environment variable
``NAPARI_PIX2REP_SETTINGS`` names an INI file to use instead (the tests point it at a
temporary folder).
"""

from __future__ import annotations

import os
from typing import Any

from qtpy.QtCore import QSettings

SETTINGS_ENV = "NAPARI_PIX2REP_SETTINGS"
ORGANIZATION = "napari-pix2rep"
APPLICATION = "dock"


def open_settings() -> QSettings:
    """The settings store (the INI file of ``$NAPARI_PIX2REP_SETTINGS`` when set)."""
    path = os.environ.get(SETTINGS_ENV)
    if path:
        return QSettings(path, QSettings.IniFormat)
    return QSettings(QSettings.IniFormat, QSettings.UserScope, ORGANIZATION, APPLICATION)


class Settings:
    """Typed get/set over QSettings; values fall back to ``default`` when unset or bad."""

    def __init__(self) -> None:
        self._q = open_settings()

    def get(self, key: str, default: Any) -> Any:
        value = self._q.value(key, None)
        if value is None:
            return default
        try:
            if isinstance(default, bool):
                return value if isinstance(value, bool) else str(value).lower() == "true"
            if isinstance(default, int):
                return int(value)
            if isinstance(default, float):
                return float(value)
            return str(value)
        except (TypeError, ValueError):
            return default

    def set(self, key: str, value: Any) -> None:
        self._q.setValue(key, value)

    def sync(self) -> None:
        self._q.sync()

    @property
    def path(self) -> str:
        return self._q.fileName()
