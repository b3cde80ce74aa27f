"""The classes a segmentation holds: names, label values, colours, the ignore value.

One home for the cardiac convention (ACDC): 0 background, 1 RV cavity, 2 LV myocardium,
3 LV cavity, unless a model file says otherwise. ``IGNORE`` (-1) marks pixels a training
target does not judge (unannotated or uncertain). The npe2 reader, the dock, the CLI,
the metrics and the losses all import from here.

Imports neither Qt nor torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

BACKGROUND, RV, MYO, LV = 0, 1, 2, 3
#: The default class list: label ``i`` is name ``i``.
DEFAULT_CLASSES: tuple[str, ...] = ("background", "RV", "MYO", "LV")
#: The structures the metrics and protocols report, in label order.
STRUCTURES: tuple[str, ...] = DEFAULT_CLASSES[1:]
#: Target value for pixels a loss ignores.
IGNORE = -1

#: RGBA colours of the default classes: background transparent, RV blue, MYO green, LV red.
BASE_COLORS: dict[int, tuple[float, float, float, float]] = {
    BACKGROUND: (0.0, 0.0, 0.0, 0.0),
    RV: (0.20, 0.45, 1.00, 1.0),
    MYO: (0.15, 0.80, 0.30, 1.0),
    LV: (1.00, 0.25, 0.20, 1.0),
}
EXTRA_COLORS = (
    (1.00, 0.85, 0.10, 1.0),
    (0.85, 0.30, 0.95, 1.0),
    (0.10, 0.85, 0.90, 1.0),
    (1.00, 0.55, 0.10, 1.0),
    (0.60, 0.40, 0.20, 1.0),
    (0.95, 0.60, 0.75, 1.0),
)


def parse_classes(text: str | Sequence[str]) -> tuple[str, ...]:
    """Class names from ``"background, RV, MYO, LV"`` (or a list); label ``i`` is name ``i``.

    Raises ``ValueError`` (one sentence) for fewer than two names or a repeated name.
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    names = tuple(str(n).strip() for n in items if str(n).strip())
    if len(names) < 2:
        raise ValueError(
            "Give at least two comma-separated classes, background first (e.g. "
            "background, RV, MYO, LV)."
        )
    seen = set()
    for n in names:
        if n.lower() in seen:
            raise ValueError(f"The class {n!r} is listed twice.")
        seen.add(n.lower())
    return names


def format_classes(classes: Iterable[str]) -> str:
    """``("background", "RV")`` -> ``"background, RV"``."""
    return ", ".join(classes)


def class_colors(n_classes: int) -> dict[int, tuple[float, float, float, float]]:
    """RGBA colour of each label value ``0 .. n_classes - 1`` (0 transparent)."""
    out = {}
    for i in range(n_classes):
        if i in BASE_COLORS:
            out[i] = BASE_COLORS[i]
        else:
            out[i] = EXTRA_COLORS[(i - len(BASE_COLORS)) % len(EXTRA_COLORS)]
    return out
