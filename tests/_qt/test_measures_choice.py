"""The Measures tab offers segmentations first, pre-selects the ED/ES pair by frame,
keeps a hand-picked choice, and says which layers it measured."""

from __future__ import annotations

import numpy as np
import pytest

from napari_pix2rep.evaluation.phantom import make_phantom

pytest.importorskip("qtpy")


def _items(combo):
    return [combo.itemText(i) for i in range(combo.count())]


def test_measures_pick_segmentations_and_the_ed_es_pair(dock, notes):
    from napari_pix2rep._qt import layers as L

    viewer, widget = dock
    cine = make_phantom(n_slices=6, size=(64, 64), n_frames=6, seed=2)
    spacing = cine.spacing[1:]
    ed_img = viewer.add_image(cine.image[0], name="patient131_frame01", scale=spacing)
    panel = widget.measure_panel
    ann = widget.segment_panel.new_annotation_layer()  # made first, painted on 2 slices
    ann.data[2:4] = cine.labels[0][2:4]
    seg_ed = L.add_labels_for(viewer, ed_img, L.SEGMENTATION, ("background", "RV", "MYO", "LV"))
    seg_ed.data = cine.labels[0]
    assert panel.layer_combo.currentText() == seg_ed.name  # not the annotation layer
    assert _items(panel.layer_combo)[-1] == ann.name
    assert ann.name not in _items(panel.es_combo)

    es_img = viewer.add_image(
        cine.image[cine.es_frame], name=f"patient131_frame{cine.es_frame + 1:02d}", scale=spacing
    )
    seg_es = L.add_labels_for(viewer, es_img, L.SEGMENTATION, ("background", "RV", "MYO", "LV"))
    seg_es.data = cine.labels[cine.es_frame]
    assert (panel.layer_combo.currentText(), panel.es_combo.currentText()) == (
        seg_ed.name,
        seg_es.name,
    )
    table = panel.compute()
    assert table is not None and 20.0 < panel.value("LV EF") < 85.0
    assert f"Measured ED {seg_ed.name}, ES {seg_es.name}" in panel.note.text()
    assert "frames 1 and" in panel.note.text()

    # a choice made by hand stays when layers come and go
    panel.layer_combo.setCurrentText(ann.name)
    panel.layer_combo.activated.emit(panel.layer_combo.currentIndex())
    viewer.add_labels(np.zeros((6, 64, 64), np.uint8), name="other")
    assert panel.layer_combo.currentText() == ann.name
    panel.compute()
    assert f"Measured ED {ann.name}, ES {seg_es.name} (chosen here)" in panel.note.text()
    assert "only its painted slices count" in panel.note.text()
    assert not [m for s, m in notes if s == "error"]
