"""How a segmenter is trained from annotations: :class:`TrainConfig` (linear probe or
fine-tune, their steps and rates, the fine-tuning augmentation).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from napari_pix2rep.core.choices import PROBE_HEADS
from napari_pix2rep.core.classes import DEFAULT_CLASSES
from napari_pix2rep.pretrain.augment import FINETUNE_AUGMENT, AugmentConfig


@dataclass
class TrainConfig:
    """How a segmenter is trained from annotations."""

    mode: str = "linear"  # "linear" or "finetune"
    classes: tuple[str, ...] = DEFAULT_CLASSES
    annotation_mode: str = "full"
    background_value: int | None = None
    seed: int = 0
    # linear probe
    probe_steps: int = 300
    probe_lr: float = 1e-2
    probe_max_pixels: int = 100_000
    probe_balance: float = 0.5  # class weights ~ frequency ** -probe_balance
    # what the probe reads (PROBE_HEADS): "linear", the backbone's D-channel output;
    # "hypercolumn", every level of the U-Net (bottleneck and decoder levels);
    # "hypercolumn+output", both; "decoder", the decoder levels without the bottleneck
    # (a hypercolumn head for all but "linear"). "linear" stays the default: on the 20
    # validation patients (few-slice, benchmarks/few_slice.py --probe-head) the
    # hypercolumn raised the mean DICE 0.756 -> 0.779 (ED 0.771 -> 0.813) but nearly
    # doubled the LV ejection-fraction error (6.2 -> 11.3 points) and tripled the probe's
    # time (docs/results/few_slice_hypercolumn.md, few_slice_linear_probe.md)
    probe_head: str = "linear"
    # fine-tuning
    ft_steps: int = 300
    lr_backbone: float = 2e-4
    lr_head: float = 1e-2
    batch_size: int = 8
    crop: int = 128  # fine-tuning window (model-grid pixels); smaller images use their size
    foreground_p: float = 0.67  # share of crops centred on a labelled structure pixel
    elastic_px: float = 3.0  # smooth random displacement of the crops (std, pixels)
    freeze_bn: bool = True
    min_slices_for_val: int = 40  # hold slices out for early stopping from this many
    val_fraction: float = 0.2
    eval_every: int = 25
    patience: int = 4
    augment: AugmentConfig = field(default_factory=lambda: FINETUNE_AUGMENT)
    # adapting a trained zero-click segmenter (the default model) to painted slices: off
    # by default, as on the validation patients 40 steps at 1e-4, 3e-5 or 1e-5 made the
    # unpainted slices of some patients worse and none clearly better (docs/benchmarks.md,
    # "Default model"); the painted slices are kept as painted either way
    adapt_steps: int = 0
    adapt_lr: float = 3e-5
    # supervised local contrastive stage before fine-tuning (0 = off)
    local_contrast_steps: int = 0
    local_contrast_lr: float = 1e-4
    local_contrast_temperature: float = 0.1

    def __post_init__(self) -> None:
        if self.mode not in ("linear", "finetune"):
            raise ValueError(f"Unknown mode {self.mode!r}: use 'linear' or 'finetune'.")
        self.classes = tuple(self.classes)
        if len(self.classes) < 2:
            raise ValueError("At least two classes (background and one structure) are needed.")
        if self.probe_head not in PROBE_HEADS:
            raise ValueError(
                f"Unknown probe head {self.probe_head!r}: use one of {', '.join(PROBE_HEADS)}."
            )
        if self.probe_steps < 1:
            raise ValueError("The linear probe needs at least one step (probe_steps >= 1).")
        if isinstance(self.augment, dict):
            self.augment = AugmentConfig(**self.augment)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["classes"] = list(self.classes)
        return d
