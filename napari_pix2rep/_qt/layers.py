"""napari layer helpers for the dock: which layers go together, new labels layers,
class colours and history-recording writes.

Inside a plugin widget napari hands out its objects wrapped in a ``PublicOnlyProxy``
(a new proxy on every access), so layers are compared and used as keys through
:func:`unwrap`, never with ``is``; only public napari API is used.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_pix2rep.annotate.edits import changed_voxels
from napari_pix2rep.core.classes import class_colors
from napari_pix2rep.io import layer_meta
from napari_pix2rep.io.layer_meta import (
    ANNOTATION,
    SEGMENTATION,
    UNCERTAINTY,
    layer_spacing,
    role_metadata,
    same,
    unwrap,
)

__all__ = ["ANNOTATION", "SEGMENTATION", "UNCERTAINTY", "same", "unwrap"]


def role(layer: Any) -> str | None:
    return layer_meta.role(layer.metadata)


def linked_image(viewer: Any, layer: Any) -> str | None:
    """The current name of the image the dock made ``layer`` for (found by its id, so a
    renamed image is still found), else the name stored with the layer, else None."""
    image = layer_meta.image_of(viewer.layers, layer.metadata)
    return image.name if image is not None else layer_meta.linked_image(layer.metadata)


def is_image(layer: Any) -> bool:
    from napari.layers import Image

    return isinstance(layer, Image) and not layer.rgb


def is_labels(layer: Any) -> bool:
    from napari.layers import Labels

    return isinstance(layer, Labels)


def image_layers(viewer: Any) -> list[Any]:
    """3D / 4D grey image layers (not the dock's uncertainty maps)."""
    return [
        ly
        for ly in viewer.layers
        if is_image(ly) and ly.ndim in (3, 4) and role(ly) != UNCERTAINTY
    ]


def labels_layers(viewer: Any, shape: Sequence[int] | None = None) -> list[Any]:
    """3D / 4D labels layers, only those of ``shape`` when given."""
    out = [ly for ly in viewer.layers if is_labels(ly) and ly.ndim in (3, 4)]
    if shape is not None:
        out = [ly for ly in out if tuple(ly.data.shape) == tuple(shape)]
    return out


def find_layer(viewer: Any, name: str | None) -> Any | None:
    return layer_meta.find_layer(viewer.layers, name)


def annotation_candidates(viewer: Any, image: Any) -> list[Any]:
    """Labels layers on the image's grid that can hold annotations (its own first)."""
    cands = [ly for ly in labels_layers(viewer, image.data.shape) if role(ly) != SEGMENTATION]
    layers = list(viewer.layers)
    mine = [
        ly
        for ly in cands
        if role(ly) == ANNOTATION and layer_meta.belongs_to(ly.metadata, image, layers)
    ]
    ids = {id(unwrap(ly)) for ly in mine}
    return mine + [ly for ly in cands if id(unwrap(ly)) not in ids]


def linked_layer(viewer: Any, image: Any, which: str) -> Any | None:
    """The annotation / segmentation / uncertainty layer the dock made for ``image``."""
    return layer_meta.linked_layer(viewer.layers, image, which)


def remove_if_empty(viewer: Any, layer: Any) -> None:
    """Remove ``layer`` from the viewer unless it holds any label (None: nothing to do)."""
    if layer is None or np.any(layer.data):
        return
    for ly in list(viewer.layers):
        if same(ly, layer):
            viewer.layers.remove(ly)


def spacing(layer: Any) -> tuple[float, ...]:
    """Voxel spacing (display order, mm / s) from the NIfTI metadata, else the scale."""
    return layer_spacing(layer.metadata, layer.scale, layer.ndim)


def set_classes(layer: Any, classes: Sequence[str]) -> None:
    """Colour the labels by class and show the class name under the cursor."""
    from napari.utils.colormaps import DirectLabelColormap

    colors = {None: np.zeros(4), **{k: np.array(v) for k, v in class_colors(len(classes)).items()}}
    layer.colormap = DirectLabelColormap(color_dict=colors)
    layer.features = {"index": np.arange(len(classes)), "class": np.array(list(classes))}
    info = layer_meta.with_classes(layer.metadata, classes)
    if info is not None:
        layer.metadata[layer_meta.ROLE_KEY] = info


#: a frame number at the end of an image name: "patient131_frame01", "scan frame 12"
_FRAME = re.compile(r"^(?P<case>.*?)[_\- .]*frame[_\- ]*(?P<frame>\d+)$", re.IGNORECASE)
#: an ED / ES word in an image name: "patient131_ED", "ES scan"
_PHASE = re.compile(r"(?:^|[_\- .])(?P<phase>ED|ES)(?=$|[_\- .])")
#: how each kind of layer the dock makes is named
KIND_WORDS = {ANNOTATION: "annotations", SEGMENTATION: "seg", UNCERTAINTY: "uncertainty"}
LONG_WORDS = {ANNOTATION: "annotations", SEGMENTATION: "segmentation", UNCERTAINTY: "uncertainty"}


def cardiac_phases(source_path: str | None) -> dict[int, str]:
    """``{frame number: "ED" / "ES"}`` from the ACDC-style ``Info.cfg`` beside the image
    file ({} when there is none)."""
    if not source_path:
        return {}
    try:
        text = (Path(source_path).parent / "Info.cfg").read_text(errors="replace")
    except OSError:
        return {}
    found = (re.search(rf"^\s*{p}\s*:\s*(\d+)\s*$", text, re.M) for p in ("ED", "ES"))
    return {int(m.group(1)): p for m, p in zip(found, ("ED", "ES")) if m}


def layer_name(image_name: str, which: str, source_path: str | None = None) -> str:
    """A short name that tells layers of different phases apart, phase or frame first:
    "ED seg · patient131", "frame 5 annotations · patient131", else "scan segmentation"."""
    frame = _FRAME.match(image_name)
    phase = _PHASE.search(image_name)
    if frame and frame.group("case"):
        number = int(frame.group("frame"))
        tag = cardiac_phases(source_path).get(number) or f"frame {number}"
        case = frame.group("case")
    elif phase and image_name.strip("_- .") != phase.group("phase"):
        tag = phase.group("phase")
        case = (image_name[: phase.start()] + image_name[phase.end() :]).strip("_- .")
    else:
        return f"{image_name} {LONG_WORDS[which]}"
    return f"{tag} {KIND_WORDS[which]} · {case}"


def _name_for(image: Any, which: str) -> str:
    return layer_name(image.name, which, layer_meta.source_path(image.metadata))


def _meta_for(image: Any, which: str, classes: Sequence[str] | None) -> dict:
    return role_metadata(image.metadata, which, image.name, classes)


def add_labels_for(viewer: Any, image: Any, which: str, classes: Sequence[str]) -> Any:
    """A new empty labels layer on the image's grid (shape, scale, metadata copied)."""
    layer = viewer.add_labels(
        np.zeros(image.data.shape, dtype=np.uint8),
        name=_name_for(image, which),
        scale=tuple(image.scale),
        translate=tuple(image.translate),
        metadata=_meta_for(image, which, classes),
    )
    set_classes(layer, classes)
    return layer


def add_annotation_layer(viewer: Any, image: Any, classes: Sequence[str]) -> Any:
    """A new empty annotation layer for ``image``, active and ready to paint the last class."""
    layer = add_labels_for(viewer, image, ANNOTATION, classes)
    layer.selected_label = len(classes) - 1 if len(classes) > 1 else 1
    layer.brush_size = 5
    layer.mode = "paint"
    viewer.layers.selection.active = layer
    return layer


def add_uncertainty_for(viewer: Any, image: Any, data: np.ndarray) -> Any:
    layer = linked_layer(viewer, image, UNCERTAINTY)
    if layer is not None:
        layer.data = data
        return layer
    return viewer.add_image(
        data,
        name=_name_for(image, UNCERTAINTY),
        scale=tuple(image.scale),
        translate=tuple(image.translate),
        metadata=_meta_for(image, UNCERTAINTY, None),
        colormap="magma",
        contrast_limits=(0.0, 0.75),
        blending="additive",
        opacity=0.6,
        visible=False,
    )


def export_labels(layer: Any, path: str) -> str:
    """Save a labels layer as NIfTI with its image's header (the plugin writer); returns
    the file written."""
    from napari_pix2rep._writer import write_labels

    meta = {"metadata": layer.metadata, "scale": layer.scale}
    (written,) = write_labels(path, np.asarray(layer.data), meta)
    return written


def write_with_history(layer: Any, new: np.ndarray) -> int:
    """Make the layer's data equal ``new`` as ONE undoable edit; returns voxels changed.

    Only the changed voxels go through ``Labels.data_setitem``, so Ctrl+Z on the layer
    (``layer.undo()``) restores exactly what was there before.
    """
    new = np.asarray(new)
    if new.shape != layer.data.shape:
        raise ValueError(f"The result {new.shape} does not fit the layer {layer.data.shape}.")
    indices = changed_voxels(layer.data, new)
    n = int(indices[0].size)
    if n:
        values = new[indices].astype(layer.data.dtype, copy=False)
        with layer.block_history():
            layer.data_setitem(indices, values)
    return n


def write_indices_with_history(layer: Any, indices: tuple, values: np.ndarray) -> int:
    """``data_setitem`` as one undoable edit (no-op when nothing changes)."""
    n = int(indices[0].size) if indices else 0
    if n:
        with layer.block_history():
            layer.data_setitem(indices, np.asarray(values).astype(layer.data.dtype, copy=False))
    return n
