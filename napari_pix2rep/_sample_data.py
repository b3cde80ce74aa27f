"""npe2 sample data: the synthetic cardiac phantom (3D and 4D cine) with its truth."""

from __future__ import annotations

from typing import Any

from napari_pix2rep._reader import layer_data
from napari_pix2rep.evaluation.phantom import Phantom, make_phantom

LayerData = tuple[Any, dict[str, Any], str]


def _layers(phantom: Phantom, name: str) -> list[LayerData]:
    image = phantom.to_volume("image")
    labels = phantom.to_volume("labels")
    # the truth layer carries the image's metadata, so it exports with the image's header
    lab = layer_data(image.with_data(labels.data), labels=True, name=f"{name} truth")
    return [layer_data(image, labels=False, name=name), lab]


def phantom_3d() -> list[LayerData]:
    """A 10-slice short-axis phantom (image + ``truth`` labels)."""
    return _layers(make_phantom(seed=0), "phantom")


def phantom_4d() -> list[LayerData]:
    """A 12-frame cine phantom, end-diastole at frame 0 (image + ``truth`` labels)."""
    return _layers(make_phantom(n_frames=12, seed=0), "phantom cine")
