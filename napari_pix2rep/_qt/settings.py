"""Dock settings remembered between launches: plain strings in an INI file.

The file is the one Qt's INI settings for "napari-pix2rep" / "dock" use
(``~/.config/napari-pix2rep/dock.ini``, ``%APPDATA%\\napari-pix2rep\\dock.ini`` on Windows);
the environment variable ``NAPARI_PIX2REP_SETTINGS`` names another file (the tests point it
at a temporary folder).

QSettings is not used on purpose: it turns ``@Variant(...)`` values back into Python objects
by un-pickling them, so a crafted settings file would run code when the dock opens. Here
every value is read as text and nothing else: values in Qt's quoting (``"a, b"``, ``\\\\``)
keep working, ``@Variant`` / ``@ByteArray`` values are ignored (the default is used), and the
file is always written whole to a temporary file beside it, then moved into place.
"""

from __future__ import annotations

import configparser
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

from napari_pix2rep.io.outputs import atomic_write

logger = logging.getLogger(__name__)

SETTINGS_ENV = "NAPARI_PIX2REP_SETTINGS"
ORGANIZATION = "napari-pix2rep"
APPLICATION = "dock"
#: Qt's INI section for keys without a "group/" part
GENERAL = "General"

_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_PLAIN = re.compile(r"[A-Za-z0-9_./:+\-~()\[\]]*( [A-Za-z0-9_./:+\-~()\[\]]+)*")
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def settings_path() -> Path:
    """The INI file: ``$NAPARI_PIX2REP_SETTINGS``, else the user's config folder."""
    env = os.environ.get(SETTINGS_ENV)
    if env:
        return Path(env)
    if sys.platform == "win32" and os.environ.get("APPDATA"):
        base = Path(os.environ["APPDATA"])
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / ORGANIZATION / f"{APPLICATION}.ini"


def decode_value(raw: str) -> str | None:
    """The text of one INI value in Qt's quoting (``"..."``, backslash escapes); None for a
    value that is not plain text (``@Variant(...)``, ``@ByteArray(...)`` and the other
    ``@`` forms are never decoded: ``@@`` stands for a literal ``@``)."""
    raw, out, i = raw.strip(), [], 0
    while i < len(raw):
        ch = raw[i]
        if ch == '"':
            i += 1
            continue
        if ch == "\\" and i + 1 < len(raw):
            nxt = raw[i + 1]
            digits = re.match(r"[0-9a-fA-F]+", raw[i + 2 :]) if nxt == "x" else None
            if digits:  # one UTF-16 code unit, as Qt reads it
                out.append(chr(int(digits.group(), 16) & 0xFFFF))
                i += 2 + len(digits.group())
            else:
                out.append(_ESCAPES.get(nxt, nxt))
                i += 2
            continue
        out.append(ch)
        i += 1
    text = "".join(out).encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    if text.startswith("@"):
        return text[1:] if text.startswith("@@") else None
    return text


def encode_value(text: str) -> str:
    """``text`` as an ASCII INI value that Qt 5, Qt 6 and :func:`decode_value` all read
    back unchanged (quoted, backslash escapes, ``\\xNNNN`` for characters beyond ASCII)."""
    if _PLAIN.fullmatch(text) and text == text.strip():
        return text
    units = text.encode("utf-16-le", "surrogatepass")
    out, hex_next = ["@"] if text.startswith("@") else [], False
    for k in range(0, len(units), 2):
        code = int.from_bytes(units[k : k + 2], "little")
        ch = chr(code)
        letter = next((key for key, value in _ESCAPES.items() if value == ch), None)
        if ch in '\\"':
            out.append("\\" + ch)
        elif letter:
            out.append("\\" + letter)
        elif code < 0x20 or code >= 0x7F or (hex_next and ch in _HEX_DIGITS):
            out.append(f"\\x{code:x}")  # a hex digit right after one is escaped too
            hex_next = True
            continue
        else:
            out.append(ch)
        hex_next = False
    return '"' + "".join(out) + '"'


def _split_key(key: str) -> tuple[str, str]:
    group, _, name = key.rpartition("/")
    return (group or GENERAL), name


def read_settings(path: Path) -> dict[str, str]:
    """Every plain-text value in the INI file as ``{"group/name": text}`` ({} when the file
    is missing or unreadable; values that are not plain text are left out)."""
    parser = configparser.ConfigParser(
        interpolation=None, strict=False, delimiters=("=",), comment_prefixes=(";", "#")
    )
    parser.optionxform = str  # keep the keys' case
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            parser.read_file(f)
    except FileNotFoundError:
        return {}
    except (OSError, configparser.Error) as exc:
        logger.warning("napari-pix2rep: ignoring the settings file %s (%s)", path, exc)
        return {}
    values: dict[str, str] = {}
    for section in parser.sections():
        for name, raw in parser.items(section, raw=True):
            text = decode_value(raw)
            key = name if section == GENERAL else f"{section}/{name}"
            if text is None:
                logger.warning("napari-pix2rep: ignoring the non-text setting %s in %s", key, path)
            else:
                values[key] = text
    return values


def write_settings(path: Path, values: dict[str, str]) -> None:
    """Write ``values`` as the whole INI file, atomically (:func:`atomic_write`)."""
    sections: dict[str, list[str]] = {}
    for key in sorted(values):
        group, name = _split_key(key)
        sections.setdefault(group, []).append(f"{name}={encode_value(values[key])}")
    text = "\n".join(f"[{group}]\n" + "\n".join(lines) + "\n" for group, lines in sections.items())
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


class Settings:
    """Typed get/set over the settings file; values fall back to ``default`` when unset
    or unreadable. Every ``set`` is written at once (merged into the file as it is now)."""

    def __init__(self) -> None:
        self._path = settings_path()
        self._values = read_settings(self._path)

    def get(self, key: str, default: Any) -> Any:
        value = self._values.get(key)
        if value is None:
            return default
        try:
            if isinstance(default, bool):
                return value.strip().lower() == "true"
            if isinstance(default, int):
                return int(value)
            if isinstance(default, float):
                return float(value)
            return value
        except ValueError:
            return default

    def set(self, key: str, value: Any) -> None:
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        if self._values.get(key) == text:
            return
        self._values[key] = text
        merged = {**read_settings(self._path), key: text}
        try:
            write_settings(self._path, merged)
        except OSError as exc:  # a read-only or full disk must not break the dock
            logger.warning("napari-pix2rep: could not save settings to %s (%s)", self._path, exc)

    def sync(self) -> None:
        """Re-read the file (every ``set`` is already written)."""
        self._values = read_settings(self._path)

    @property
    def path(self) -> str:
        return str(self._path)
