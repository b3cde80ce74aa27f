"""A pretraining run's settings: :class:`PretrainConfig`, its learning-rate schedule and
which settings a resumed run may change.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from napari_pix2rep.core.choices import LOSSES
from napari_pix2rep.model.preprocess import PreprocessConfig
from napari_pix2rep.pretrain.augment import AugmentConfig

#: Settings a resumed run takes from its checkpoint: changing them changes the trajectory.
TRAJECTORY = ("preset", "loss", "batch_size", "lr", "seed")
#: Settings a resumed run takes from the caller: when to save, and where the schedule ends.
RESUMABLE = ("steps", "checkpoint_every", "checkpoint_minutes", "snapshot_every")


@dataclass
class PretrainConfig:
    """Settings of a pretraining run (defaults: the authors' code, with the small preset of
    README.md, "Models")."""

    preset: str = "small"
    loss: str = "infonce"
    steps: int = 1000
    batch_size: int = 8
    crop: int = 128
    lr: float = 4.7e-4
    weight_decay: float = 0.0
    warmup_steps: int = 50
    min_lr_ratio: float = 0.05
    n_pixels: int = 1000
    temperature: float = 0.53
    barlow_lambda: float = 5e-3
    barlow_pixels: int | None = 16384
    seed: int = 0
    checkpoint_every: int = 100
    checkpoint_minutes: float = 2.0  # also save when this long has passed (0 = never)
    snapshot_every: int = 0  # also keep <out stem>_stepN.pt every N steps (0 = never)
    amp: bool = True
    channels_last: bool = True
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"Unknown loss {self.loss!r}: use one of {', '.join(LOSSES)}.")
        if self.steps < 1 or self.batch_size < 1 or self.checkpoint_every < 1:
            raise ValueError("steps, batch size and checkpoint interval must be at least 1.")
        if self.snapshot_every < 0 or not self.checkpoint_minutes >= 0:
            raise ValueError("The snapshot interval and checkpoint minutes cannot be negative.")
        if isinstance(self.preprocess, dict):
            self.preprocess = PreprocessConfig.from_dict(self.preprocess)
        if isinstance(self.augment, dict):
            self.augment = AugmentConfig(**self.augment)

    def to_dict(self) -> dict:
        return asdict(self)


def resume_conflicts(saved: PretrainConfig, given: dict) -> dict[str, tuple]:
    """Settings in ``given`` (name -> value, None = not given) that differ from the
    checkpoint's ``saved`` run and would change its trajectory (:data:`TRAJECTORY`):
    ``{name: (given, saved)}``."""
    return {
        name: (given[name], getattr(saved, name))
        for name in TRAJECTORY
        if given.get(name) is not None and given[name] != getattr(saved, name)
    }


def lr_at(step: int, cfg: PretrainConfig) -> float:
    """Linear warm-up, then cosine decay to ``min_lr_ratio * lr`` at ``cfg.steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, cfg.steps - cfg.warmup_steps)
    t = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))
