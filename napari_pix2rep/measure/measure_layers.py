"""Which labels layers the Measures tab offers and pre-selects. No Qt, no napari.

Segmentations (whole volumes) come first, then other labels layers (e.g. a label file
that was opened); the dock's annotation layers hold only the painted slices, so they
are offered last for ED and never for ES, and never pre-selected. The ED/ES pair is
picked by name when it can: "ED"/"ES" (or diastole/systole) in the layer's or its
image's name, else frame numbers (ACDC ``_frame01`` / ``_frame12``: a gated cine starts
at end-diastole, so the lower frame is ED).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

SEGMENTATION, ANNOTATION = "segmentation", "annotation"

_ED = re.compile(r"(?<![a-z])ed(?![a-z])|diastol", re.IGNORECASE)
_ES = re.compile(r"(?<![a-z])es(?![a-z])|systol", re.IGNORECASE)
_FRAME = re.compile(r"(?<![a-z])(?:frame|fr)[ _-]?(\d+)", re.IGNORECASE)
_NOISE = re.compile(
    r"(?<![a-z])(?:ed|es|end|diastol\w*|systol\w*|segmentation|seg|labels?|gt|"
    r"(?:frame|fr)[ _-]?\d+)(?![a-z])",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class LabelsInfo:
    """What the choice needs to know of a labels layer (``shape`` in display order)."""

    name: str
    shape: tuple[int, ...]
    role: str | None = None  # the dock's role: "segmentation", "annotation" or None
    image: str | None = None  # the image the dock made it for


@dataclass(frozen=True)
class MeasureChoice:
    """The pre-selected layers (None: nothing suitable) and why, in a few words."""

    ed: str | None
    es: str | None
    reason: str


def phase(info: LabelsInfo) -> str | None:
    """The phase, "ED", "ES" or None, from the layer's name, else its image's name."""
    for text in (info.name, info.image or ""):
        ed, es = bool(_ED.search(text)), bool(_ES.search(text))
        if ed != es:
            return "ED" if ed else "ES"
    return None


def frame(info: LabelsInfo) -> int | None:
    """The frame number in the layer's (or its image's) name, e.g. 12 for ``_frame12``."""
    for text in (info.name, info.image or ""):
        found = _FRAME.search(text)
        if found:
            return int(found.group(1))
    return None


def base_name(info: LabelsInfo) -> str:
    """The name without phase, frame and "segmentation"-like words: the case it shows."""
    text = _NOISE.sub(" ", info.image or info.name)
    return " ".join(re.split(r"[\s_\-.]+", text)).strip().lower()


def _rank(info: LabelsInfo) -> int:
    return {SEGMENTATION: 0, ANNOTATION: 2}.get(info.role or "", 1)


def ed_candidates(layers: Sequence[LabelsInfo]) -> list[LabelsInfo]:
    """3D / 4D labels layers in the order offered: segmentations, others, annotations."""
    usable = [ly for ly in layers if len(ly.shape) in (3, 4)]
    return sorted(usable, key=_rank)  # stable: the viewer's order within a rank


def es_candidates(layers: Sequence[LabelsInfo], ed: LabelsInfo | None) -> list[LabelsInfo]:
    """3D layers on ED's grid that can be its ES partner (no annotation layers)."""
    if ed is None or len(ed.shape) != 3:
        return []
    return [
        ly
        for ly in ed_candidates(layers)
        if ly.name != ed.name and ly.shape == ed.shape and ly.role != ANNOTATION
    ]


def _named_pair(group: list[LabelsInfo]) -> tuple[LabelsInfo, LabelsInfo] | None:
    eds = [ly for ly in group if len(ly.shape) == 3 and phase(ly) == "ED"]
    ess = [ly for ly in group if len(ly.shape) == 3 and phase(ly) == "ES"]
    pairs = [(a, b) for a in eds for b in ess if a.shape == b.shape]
    same_case = [(a, b) for a, b in pairs if base_name(a) == base_name(b)]
    return (same_case or pairs or [None])[0]


def _frame_pair(group: list[LabelsInfo]) -> tuple[LabelsInfo, LabelsInfo] | None:
    framed = [ly for ly in group if len(ly.shape) == 3 and frame(ly) is not None]
    for ly in framed:
        same = [o for o in framed if o.shape == ly.shape and base_name(o) == base_name(ly)]
        frames = {frame(o) for o in same}
        if len(same) == 2 and len(frames) == 2:
            first, second = sorted(same, key=frame)
            return first, second
    return None


def choose_measure_layers(layers: Sequence[LabelsInfo]) -> MeasureChoice:
    """Pre-select what to measure among ``layers`` (in the viewer's order).

    Within the best group (the dock's segmentations, else other labels layers; never
    annotation layers): an ED/ES pair by name, else by frame number, else a 4D cine
    segmentation (ED and ES from its volume curve), else the first 3D one (volumes).
    """
    cands = [ly for ly in ed_candidates(layers) if ly.role != ANNOTATION]
    if not cands:
        return MeasureChoice(None, None, "no segmentation to measure")
    best = min(_rank(ly) for ly in cands)
    group = [ly for ly in cands if _rank(ly) == best]
    pair = _named_pair(group)
    if pair is not None:
        return MeasureChoice(pair[0].name, pair[1].name, "ED and ES by name")
    pair = _frame_pair(group)
    if pair is not None:
        ed, es = pair
        return MeasureChoice(
            ed.name, es.name, f"frames {frame(ed)} and {frame(es)}: the earlier one is ED"
        )
    cine = [ly for ly in group if len(ly.shape) == 4]
    if cine:
        return MeasureChoice(cine[0].name, None, "a cine: ED and ES from its volume curve")
    return MeasureChoice(group[0].name, None, "one 3D layer: volumes only")
