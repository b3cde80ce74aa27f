"""Files in and out, no torch: NIfTI and DICOM reading (geometry kept), writing masks with
their image's header, DICOM SEG, what a napari layer carries (layer_meta), the output
rules (atomic writes, never over an input) and errors as one sentence; the ACDC and
Sunnybrook dataset readers. Imports only :mod:`napari_pix2rep.core`.
"""
