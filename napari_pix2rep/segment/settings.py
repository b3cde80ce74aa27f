"""The Segment recipe's settings as one value: :class:`SegmentSettings`.

Every choice the recipe (:mod:`napari_pix2rep.segment.recipe`) makes that a user, a benchmark or
a test may change is a field here, with the shipped default; nothing is read from module
globals. A settings value is written into the recipe's report and into the metadata of
the segmenters it trains (``meta["segment_settings"]``). No torch: the dock builds one
in its window thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["FUSE_WEIGHT", "Registration", "SegmentSettings"]

#: Weight of the other phase's carried prediction in a fused one, chosen on the validation
#: patients among 0.35, 0.5 and 0.65 (few-slice ES DICE 0.726 unfused; docs/benchmarks.md).
FUSE_WEIGHT = 0.35


@dataclass(frozen=True)
class Registration:
    """How a slice is registered: control points every ``control_spacing`` pixels,
    ``steps`` Adam steps per level, ``bending`` the weight of the bending penalty.

    The defaults were chosen on the validation patients: a control grid of 6 px and
    bending 0.05 carry the ES contraction better than 8 px and 0.1 (few-slice, carried
    slices only: ES DICE 0.726 against 0.719, LV EF error 6.5 against 9.5 points;
    docs/benchmarks.md).
    """

    control_spacing: int = 6
    steps: int = 80
    bending: float = 0.05

    @classmethod
    def parse(cls, text: str) -> Registration:
        """``"GRID,STEPS,BENDING"`` (e.g. ``"6,80,0.05"``); ValueError with one sentence."""
        try:
            grid, steps, bending = text.split(",")
            return cls(int(grid), int(steps), float(bending))
        except ValueError:
            raise ValueError(
                f"Expected the registration as GRID,STEPS,BENDING (e.g. 6,80,0.05), not {text!r}."
            ) from None


@dataclass(frozen=True)
class SegmentSettings:
    """How one Segment runs.

    ``training``: keyword arguments of :class:`~napari_pix2rep.segment.train_config.TrainConfig`
    (plain values: mode "linear" or "finetune", classes, seed, steps, crop, ...; a
    ``TrainConfig`` is taken as its fields). ``train`` False: the model (a segmenter)
    only predicts, the annotations only localise the heart. ``localise``: predict on the
    heart region (:func:`napari_pix2rep.segment.localise.locate_heart`). ``propagate``: carry
    painted slices to the other phases of their stack by ``registration`` and fuse a 3D
    phase's prediction with its painted sibling phases' (``fuse``, weight
    ``fuse_weight``). ``cleanup``: keep the heart's connected components.
    ``flip_average``: average every slice's prediction with its left-right mirror's
    (None: as the model file asks, :attr:`~napari_pix2rep.model.segmenter.Segmenter.flip_average`).
    ``keep_painted``: painted and background-only slices appear in the masks exactly as
    annotated.
    """

    training: Mapping[str, Any] = field(default_factory=dict)
    train: bool = True
    localise: bool = True
    propagate: bool = True
    fuse: bool = True
    fuse_weight: float = FUSE_WEIGHT
    registration: Registration = Registration()
    cleanup: bool = True
    keep_painted: bool = True
    flip_average: bool | None = None

    def __post_init__(self) -> None:
        training = self.training
        if hasattr(training, "to_dict"):  # a TrainConfig
            training = training.to_dict()
        object.__setattr__(self, "training", dict(training or {}))
        if self.mode not in ("linear", "finetune"):
            raise ValueError(f"Unknown mode {self.mode!r}: use 'linear' or 'finetune'.")
        if not 0.0 <= self.fuse_weight <= 1.0:
            raise ValueError(f"The fusion weight must be between 0 and 1, not {self.fuse_weight}.")

    @classmethod
    def from_flags(cls, flags: Any, training: Mapping[str, Any] | Any) -> SegmentSettings:
        """The settings of command-line ``flags`` (an ``argparse.Namespace`` with
        ``localise``, ``propagate``, ``fuse``, ``fuse_weight``, ``registration`` and,
        optionally, ``cleanup`` and ``flip_average``: ``pix2rep segment`` and the
        benchmarks) with ``training``."""
        return cls(
            training=training,
            localise=flags.localise,
            propagate=flags.propagate,
            fuse=flags.fuse,
            fuse_weight=flags.fuse_weight,
            registration=flags.registration or Registration(),
            cleanup=getattr(flags, "cleanup", True),
            flip_average=getattr(flags, "flip_average", None),
        )

    @property
    def mode(self) -> str:
        """ "linear" (a linear probe on the frozen backbone) or "finetune"."""
        return str(self.training.get("mode", "linear"))

    def train_config(self, **override: Any) -> Any:
        """The :class:`~napari_pix2rep.segment.train_config.TrainConfig` of ``training``."""
        from napari_pix2rep.segment.train_config import TrainConfig

        return TrainConfig(**{**self.training, **override})

    def to_dict(self) -> dict[str, Any]:
        """Plain values for a report or a model file (``training`` resolved to every field)."""
        out = asdict(self)
        out["training"] = self.train_config().to_dict()
        return out
