"""The named choices that the library, the CLI and the dock share: one list each, no torch.

Kept apart from :mod:`napari_pix2rep.model.nets.unet` and :mod:`napari_pix2rep.pretrain.run` (which
validate against them) so that ``pix2rep --help`` and opening the dock import no torch.
"""

from __future__ import annotations

#: U-Net presets (:data:`napari_pix2rep.model.nets.unet.PRESETS`), the default first.
PRESET_NAMES = ("small", "paper", "tiny")

#: Pretraining losses (:class:`napari_pix2rep.pretrain.config.PretrainConfig`), the default first:
#: Pix2Rep InfoNCE, Pix2Rep Barlow Twins, and the image-level SimCLR baseline.
LOSSES = ("infonce", "barlow", "simclr")

#: The losses the dock offers: the two Pix2Rep ones (SimCLR is a baseline for benchmarks).
DOCK_LOSSES = LOSSES[:2]

#: What the linear probe on a backbone may read
#: (:attr:`napari_pix2rep.segment.train_config.TrainConfig.probe_head`), the default first.
PROBE_HEADS = ("linear", "hypercolumn", "hypercolumn+output", "decoder")
