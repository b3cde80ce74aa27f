"""napari-pix2rep: few-shot cardiac MRI segmentation from Pix2Rep dense representations.

Importing the package is cheap: it imports neither torch nor Qt. Import the submodules
(``napari_pix2rep.io.nifti``, ``napari_pix2rep.pretrain.run``, ...) for the library API.
"""

__version__ = "0.1.0"
