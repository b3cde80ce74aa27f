"""``python -m napari_pix2rep.cli ...``: the ``pix2rep`` console script."""

import sys

from napari_pix2rep.cli import main

sys.exit(main())
