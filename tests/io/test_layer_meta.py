"""Tests of napari_pix2rep.io.layer_meta."""

from __future__ import annotations

from napari_pix2rep.evaluation.phantom import make_phantom
from napari_pix2rep.io.layer_meta import layer_spacing, volume_metadata


def test_layer_spacing_prefers_nifti_metadata():
    ph = make_phantom(n_slices=3, size=(32, 32), seed=1)
    meta = volume_metadata(ph.to_volume())
    assert layer_spacing(meta, (1, 1, 1), 3) == (10.0, 1.5, 1.5)
    assert layer_spacing({}, (5.0, 2.0, 2.0), 3) == (5.0, 2.0, 2.0)
    assert layer_spacing(None, (0.1, 5.0, 2.0, 2.0), 4) == (0.1, 5.0, 2.0, 2.0)


def test_role_metadata_links_a_new_layer_to_its_image_and_copies_the_header():
    from types import SimpleNamespace

    from napari_pix2rep.io.layer_meta import (
        ANNOTATION,
        ID_KEY,
        METADATA_KEY,
        SEGMENTATION,
        find_layer,
        layer_affine,
        linked_image,
        linked_layer,
        role,
        role_metadata,
        with_classes,
    )

    ph = make_phantom(n_slices=3, size=(32, 32), seed=1)
    image_meta = volume_metadata(ph.to_volume())
    meta = role_metadata(image_meta, ANNOTATION, "scan", ["background", "LV"])
    assert role(meta) == ANNOTATION and linked_image(meta) == "scan"
    assert meta[METADATA_KEY] == image_meta[METADATA_KEY]
    meta[METADATA_KEY]["spacing"][0] = 99.0  # a deep copy: the image's is unchanged
    assert image_meta[METADATA_KEY]["spacing"][0] == 10.0
    assert with_classes(meta, ["bg", "RV"]) == {
        "role": ANNOTATION,
        "image": "scan",
        "image_id": image_meta[ID_KEY],
        "classes": ["bg", "RV"],
    }
    assert (
        with_classes(image_meta, ["bg"]) is None
        and role(image_meta) is None
        and role(None) is None
    )
    assert (
        layer_affine(image_meta) == image_meta[METADATA_KEY]["affine"] and layer_affine({}) is None
    )

    image = SimpleNamespace(name="scan", data=ph.image, metadata=image_meta)
    seg = SimpleNamespace(
        name="s", data=ph.labels, metadata=role_metadata(image_meta, SEGMENTATION, "scan", None)
    )
    small = SimpleNamespace(
        name="t",
        data=ph.labels[:2],
        metadata=role_metadata(image_meta, SEGMENTATION, "scan", None),
    )
    assert linked_layer([small, seg], image, SEGMENTATION) is seg  # on the image's grid only
    assert linked_layer([seg], image, ANNOTATION) is None
    assert find_layer([small, seg], "s") is seg and find_layer([seg], "") is None


def _layer(name, data, metadata):
    from types import SimpleNamespace

    return SimpleNamespace(name=name, data=data, metadata=metadata)


def test_renaming_the_image_keeps_its_annotation_and_segmentation_linked():
    from napari_pix2rep.io.layer_meta import (
        ANNOTATION,
        ID_KEY,
        SEGMENTATION,
        image_of,
        linked_layer,
        role_metadata,
    )

    ph = make_phantom(n_slices=3, size=(32, 32), seed=1)
    image = _layer("scan", ph.image, volume_metadata(ph.to_volume()))
    ann = _layer("ann", ph.labels, role_metadata(image.metadata, ANNOTATION, "scan", None))
    seg = _layer("seg", ph.labels, role_metadata(image.metadata, SEGMENTATION, "scan", None))
    assert ID_KEY in image.metadata and ID_KEY not in ann.metadata  # the id is the image's
    image.name = "patient001 ED"  # renamed in napari's layer list
    other = _layer("scan", ph.image, volume_metadata(ph.to_volume()))  # a new image, old name
    layers = [other, image, ann, seg]
    assert linked_layer(layers, image, ANNOTATION) is ann
    assert linked_layer(layers, image, SEGMENTATION) is seg
    assert linked_layer(layers, other, ANNOTATION) is None
    assert image_of(layers, ann.metadata) is image


def test_links_without_an_id_fall_back_to_the_name_and_copies_to_the_stored_name():
    from napari_pix2rep.io.layer_meta import (
        ANNOTATION,
        ID_KEY,
        image_of,
        linked_layer,
        role_metadata,
    )

    ph = make_phantom(n_slices=3, size=(32, 32), seed=1)
    image = _layer("scan", ph.image, volume_metadata(ph.to_volume()))
    older = role_metadata(image.metadata, ANNOTATION, "scan", None)
    del older["pix2rep"]["image_id"]  # a link stored without an id
    ann = _layer("ann", ph.labels, older)
    assert linked_layer([image, ann], image, ANNOTATION) is ann
    image.name = "renamed"
    assert linked_layer([image, ann], image, ANNOTATION) is None  # only the name linked it

    # napari's "duplicate layer" copies the metadata, id included: the stored name decides
    ann = _layer("ann", ph.labels, role_metadata(image.metadata, ANNOTATION, "renamed", None))
    copy = _layer("renamed copy", ph.image, {**image.metadata})
    assert copy.metadata[ID_KEY] == image.metadata[ID_KEY]
    assert image_of([copy, image, ann], ann.metadata) is image
    # an id whose image is closed: the image now open under the stored name
    reopened = _layer("renamed", ph.image, volume_metadata(ph.to_volume()))
    assert image_of([reopened, ann], ann.metadata) is reopened
