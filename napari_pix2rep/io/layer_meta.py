"""What a napari layer's ``metadata`` holds for this plugin, read and written in one place.

- ``metadata["pix2rep_nifti"]`` (:data:`METADATA_KEY`): the raw header, extensions,
  affine, display-order spacing and source path a layer carries so a mask exported for it
  gets that image's header (:func:`napari_pix2rep.io.nifti_write.write_nifti`);
- ``metadata["pix2rep_id"]`` (:data:`ID_KEY`): an image layer's stable id, a random hex
  string written the first time the dock makes a layer for that image (:func:`image_id`);
- ``metadata["pix2rep"]`` (:data:`ROLE_KEY`): what the dock made a layer for -- its role
  (annotation / segmentation / uncertainty), the id and name of the image it belongs to,
  its classes -- and so which layers go together (:func:`linked_layer`,
  :func:`image_of`; napari's plugin proxies are compared through :func:`unwrap`).

Layers are linked by the image's id, so renaming an image keeps its annotations; the
name is the fallback for links stored without an id (a recovery entry names its image).

Imports neither Qt nor torch.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.nifti1 import Nifti1Extension

from napari_pix2rep.io.nifti import NiftiError, Volume, header_from_spacing, spacing_from_header

#: Key of the NIfTI geometry inside a napari layer's ``metadata``.
METADATA_KEY = "pix2rep_nifti"
#: Key of what the dock made a layer for inside its ``metadata``.
ROLE_KEY = "pix2rep"
#: Key of an image layer's stable id inside its ``metadata``.
ID_KEY = "pix2rep_id"
#: The roles of the layers the dock makes.
ANNOTATION, SEGMENTATION, UNCERTAINTY = "annotation", "segmentation", "uncertainty"


def volume_metadata(vol: Volume) -> dict[str, Any]:
    """What goes into a napari layer's ``metadata`` so the layer can be saved with the header.

    Returns ``{"pix2rep_nifti": {...}}`` holding plain, picklable values: the raw header
    block (bytes), its extensions, the affine, the spacing, the axis order and the source.
    """
    header = vol.header
    return {
        METADATA_KEY: {
            "format": "nifti2" if isinstance(header, nib.Nifti2Header) else "nifti1",
            "header": bytes(header.binaryblock),
            "extensions": [(int(e.get_code()), bytes(e.get_content())) for e in header.extensions],
            "affine": np.asarray(vol.affine, dtype=float).tolist(),
            "spacing": [float(s) for s in vol.spacing],
            "axis_order": "xyzt" if vol.is_4d else "xyz",
            "source_path": vol.path,
        }
    }


def nifti_meta(metadata: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The stored NIfTI geometry in layer ``metadata`` (or that inner dict itself), else None."""
    if not metadata:
        return None
    if METADATA_KEY in metadata:
        return metadata[METADATA_KEY]
    if "header" in metadata:  # the inner dict itself
        return metadata
    return None


def header_from_meta(meta: Mapping[str, Any]) -> nib.Nifti1Header:
    """The NIfTI header (with extensions) stored by :func:`volume_metadata`."""
    block = bytes(meta["header"])
    cls = nib.Nifti2Header if meta.get("format") == "nifti2" else nib.Nifti1Header
    header = cls(binaryblock=block, check=False)
    for code, content in meta.get("extensions", ()):
        header.extensions.append(Nifti1Extension(int(code), bytes(content)))
    return header


def layer_spacing(
    metadata: Mapping[str, Any] | None, scale: Sequence[float], ndim: int
) -> tuple[float, ...]:
    """Voxel spacing (display order) of a layer: the NIfTI metadata's, else its ``scale``."""
    meta = (metadata or {}).get(METADATA_KEY) or {}
    stored = tuple(float(s) for s in meta.get("spacing", ()))
    if len(stored) == ndim:
        return stored
    scale = tuple(float(s) for s in scale)
    return scale[-ndim:] if len(scale) >= ndim else (1.0,) * (ndim - len(scale)) + scale


def volume_from_layer(
    data: Any,
    metadata: Mapping[str, Any] | None,
    *,
    spacing: tuple[float, ...] | None = None,
) -> Volume:
    """Rebuild a :class:`Volume` from a napari layer's data and ``metadata``.

    Uses the NIfTI geometry stored by :func:`volume_metadata` (so a labels layer that copied
    its image's metadata gets the image's header). Without it, ``spacing`` (display order,
    e.g. the layer's ``scale``) gives an affine ``diag(spacing)``; with neither, raises
    :class:`NiftiError` rather than inventing an identity geometry.
    """
    data = np.asarray(data)
    meta = nifti_meta(metadata)
    if meta is not None:
        header = header_from_meta(meta)
        affine = np.asarray(meta.get("affine", header.get_best_affine()), dtype=np.float64)
        stored = tuple(float(s) for s in meta.get("spacing", ()))
        vol_spacing = (
            stored if len(stored) == data.ndim else spacing_from_header(header, data.ndim)
        )
        return Volume(data, vol_spacing, header, affine, meta.get("source_path"))
    if spacing is None:
        raise NiftiError(
            "The layer has no NIfTI header (it was not opened from a NIfTI file) and no "
            "voxel spacing was given, so its geometry is unknown."
        )
    if data.ndim not in (3, 4):
        raise NiftiError(f"Only 3D and 4D data can be saved as NIfTI, not shape {data.shape}.")
    header, affine = header_from_spacing(data.shape, tuple(spacing))
    return Volume(data, tuple(float(s) for s in spacing), header, affine, None)


def copy_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of layer metadata (for a new labels layer made for an image)."""
    return copy.deepcopy(dict(metadata))


def source_path(metadata: Mapping[str, Any] | None) -> str | None:
    """The file a layer was read from (stored by :func:`volume_metadata`), else None."""
    meta = nifti_meta(metadata) or {}
    return meta.get("source_path")


def layer_affine(metadata: Mapping[str, Any] | None) -> list[list[float]] | None:
    """The 4x4 voxel-to-world affine stored by :func:`volume_metadata`, else None."""
    meta = nifti_meta(metadata) or {}
    return meta.get("affine")


def role(metadata: Mapping[str, Any] | None) -> str | None:
    """What the dock made a layer for (:data:`ANNOTATION`, ...), None for other layers."""
    return ((metadata or {}).get(ROLE_KEY) or {}).get("role")


def linked_image(metadata: Mapping[str, Any] | None) -> str | None:
    """The image name stored when the dock made a layer (it may have been renamed since:
    :func:`image_of` finds the image itself), else None."""
    return ((metadata or {}).get(ROLE_KEY) or {}).get("image")


def image_id(metadata: Mapping[str, Any] | None) -> str | None:
    """An image layer's stable id; one is written into ``metadata`` when it has none and
    ``metadata`` can be changed (a napari layer's dict); None otherwise."""
    if metadata is None:
        return None
    found = metadata.get(ID_KEY)
    if isinstance(found, str) and found:
        return found
    if not isinstance(metadata, MutableMapping):
        return None
    new = uuid.uuid4().hex
    metadata[ID_KEY] = new
    return new


def role_metadata(
    image_metadata: Mapping[str, Any], which: str, image_name: str, classes: Sequence[str] | None
) -> dict[str, Any]:
    """Metadata for a new layer made for an image: a deep copy of the image's (so it is
    saved with that header) plus its role, the image's id (:func:`image_id`, given to the
    image now when it has none) and name, and (when given) classes."""
    link = image_id(image_metadata)
    meta = copy_metadata(image_metadata)
    meta.pop(ID_KEY, None)  # the id names the image, not this layer
    meta[ROLE_KEY] = {"role": which, "image": image_name}
    if link is not None:
        meta[ROLE_KEY]["image_id"] = link
    if classes is not None:
        meta[ROLE_KEY]["classes"] = list(classes)
    return meta


def with_classes(metadata: Mapping[str, Any], classes: Sequence[str]) -> dict[str, Any] | None:
    """The role entry of ``metadata`` with its class list replaced (None: not a dock layer)."""
    info = dict(metadata.get(ROLE_KEY) or {})
    if not info:
        return None
    info["classes"] = list(classes)
    return info


# -- layers that go together (napari layers or plain objects with name, data, metadata)
def unwrap(obj: Any) -> Any:
    """The object behind a napari plugin proxy (the object itself when not proxied)."""
    return getattr(obj, "__wrapped__", obj)


def same(a: Any, b: Any) -> bool:
    """True when ``a`` and ``b`` are the same layer (proxied or not)."""
    return a is not None and b is not None and unwrap(a) is unwrap(b)


def find_layer(layers: Iterable[Any], name: str | None) -> Any | None:
    """The first of ``layers`` called ``name`` (None: none, or no name)."""
    return next((ly for ly in layers if name and ly.name == name), None)


def image_of(layers: Iterable[Any], metadata: Mapping[str, Any] | None) -> Any | None:
    """The image among ``layers`` that the dock made a layer (with ``metadata``) for.

    Found by the stored image id; of several images holding it (napari's "duplicate
    layer" copies metadata) the one with the stored name, else the first. A link without
    an id, or whose image is gone, falls back to an image without a role of that name.
    """
    info = (metadata or {}).get(ROLE_KEY) or {}
    return find_image(layers, info.get("image"), info.get("image_id"))


def find_image(layers: Iterable[Any], name: str | None, link: str | None) -> Any | None:
    """The image layer with id ``link`` (of several, the one called ``name``), else the
    layer without a role called ``name``; None when there is neither."""
    layers = list(layers)
    if link:
        holders = [ly for ly in layers if (ly.metadata or {}).get(ID_KEY) == link]
        if holders:
            return next((ly for ly in holders if ly.name == name), holders[0])
    return find_layer((ly for ly in layers if role(ly.metadata) is None), name)


def belongs_to(metadata: Mapping[str, Any] | None, image: Any, layers: Iterable[Any] = ()) -> bool:
    """True when the dock made the layer with ``metadata`` for ``image`` (:func:`image_of`
    among ``image`` and the other open ``layers``)."""
    return same(image_of([image, *layers], metadata), image)


def linked_layer(layers: Iterable[Any], image: Any, which: str) -> Any | None:
    """The layer of role ``which`` the dock made for ``image`` (on its grid), else None."""
    layers = list(layers)
    for ly in layers:
        if role(ly.metadata) == which and np.shape(ly.data) == np.shape(image.data):
            if belongs_to(ly.metadata, image, layers):
                return ly
    return None
