"""Tests of napari_pix2rep.core.classes."""

from __future__ import annotations

import pytest

from napari_pix2rep.core.classes import class_colors, format_classes, parse_classes


def test_parse_and_format_classes():
    assert parse_classes(" background, RV ,MYO,LV,") == ("background", "RV", "MYO", "LV")
    assert parse_classes(["bg", "scar"]) == ("bg", "scar")
    assert format_classes(("background", "LV")) == "background, LV"
    with pytest.raises(ValueError, match="at least two"):
        parse_classes("background")
    with pytest.raises(ValueError, match="twice"):
        parse_classes("background, LV, lv")


def test_class_colors():
    colors = class_colors(7)
    assert len(colors) == 7 and colors[0][3] == 0.0  # background transparent
    assert len({tuple(c) for c in colors.values()}) == 7
    assert all(len(c) == 4 for c in colors.values())
