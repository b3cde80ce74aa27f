"""The segmenter (backbone + linear head) and the model files it is built from.

A :class:`Segmenter` is the backbone plus a linear head to class scores: a 1x1
convolution of the backbone's D-channel output (``head["type"] == "linear"``, the
default), or of the hypercolumn of every level of the U-Net, the bottleneck and each
decoder level (``"hypercolumn"``, :class:`~napari_pix2rep.model.nets.heads.HypercolumnHead`;
what the linear probe fits). Its file
(``format`` :data:`~napari_pix2rep.model.checkpoint.SEGMENTER`) holds the backbone's ``arch``
and weights, the preprocessing, the classes and the head; a backbone file (written by
pretraining) holds the same without classes and head. Every builder here takes the dict
:func:`~napari_pix2rep.model.checkpoint.load_model_file` returned, so one file is read once
(:func:`napari_pix2rep.jobs.load_model_source` for either kind).

A segmenter that segments without painting (the default cardiac model, trained on fully
labelled patients) says so in its file: ``meta["zero_click"] = True``
(:data:`ZERO_CLICK_KEY`, :attr:`Segmenter.zero_click`). The Segment recipe then predicts
with it as is when nothing is painted and fine-tunes from it when something is
(:mod:`napari_pix2rep.segment.recipe`); any other segmenter was trained on a few painted slices of
some image, so painted slices train a new head on its backbone.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from napari_pix2rep.core.classes import DEFAULT_CLASSES
from napari_pix2rep.model.checkpoint import (
    FORMAT_VERSION,
    SEGMENTER,
    ModelFileError,
    atomic_torch_save,
    build_backbone,
    library_versions,
    load_model_file,
)
from napari_pix2rep.model.nets.heads import HEAD_TYPES, HypercolumnHead, LinearHead
from napari_pix2rep.model.nets.unet import UNet, project_levels
from napari_pix2rep.model.preprocess import PreprocessConfig

#: ``meta`` key marking a segmenter that segments without painting (zero clicks).
ZERO_CLICK_KEY = "zero_click"
#: ``meta`` key asking prediction to average each slice with its left-right mirror.
FLIP_AVERAGE_KEY = "flip_average"


def make_head(kind: str, backbone: UNet, n_classes: int) -> LinearHead | HypercolumnHead:
    """A new class head of type ``kind`` (:data:`~napari_pix2rep.model.nets.heads.HEAD_TYPES`)
    for ``backbone``: ``"linear"`` reads its ``(N, D, H, W)`` output, ``"hypercolumn"``
    its levels (``UNetConfig.level_widths`` channels)."""
    if kind == "linear":
        return LinearHead(backbone.config.out_channels, n_classes)
    if kind == "hypercolumn":
        return HypercolumnHead(backbone.config.level_widths, n_classes)
    raise ValueError(f"Unknown head type {kind!r}: use one of {', '.join(HEAD_TYPES)}.")


class Segmenter(nn.Module):
    """Backbone + linear head: ``(N, 1, H, W) -> (N, K, H, W)`` class scores.

    ``head``: its type, "linear" (on the backbone's output) or "hypercolumn" (on every
    level of the U-Net); :meth:`set_head` replaces it.
    """

    def __init__(
        self,
        backbone: UNet,
        classes: Sequence[str] = DEFAULT_CLASSES,
        preprocess: PreprocessConfig | None = None,
        head: str = "linear",
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.classes = tuple(classes)
        self.preprocess = preprocess or PreprocessConfig()
        self.head = make_head(head, backbone, len(self.classes))
        self.meta: dict = {}

    @property
    def head_type(self) -> str:
        """ "linear" or "hypercolumn"."""
        return "hypercolumn" if isinstance(self.head, HypercolumnHead) else "linear"

    def set_head(self, kind: str) -> None:
        """Replace the head by a new one of type ``kind`` (on the backbone's device)."""
        device = next(self.backbone.parameters()).device
        self.head = make_head(kind, self.backbone, self.n_classes).to(device)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def zero_click(self) -> bool:
        """Whether it segments without painting (``meta[ZERO_CLICK_KEY]``)."""
        return bool(self.meta.get(ZERO_CLICK_KEY, False))

    @property
    def flip_average(self) -> bool:
        """Whether its file asks prediction to average each slice with its left-right
        mirror (``meta[FLIP_AVERAGE_KEY]``, test-time augmentation; see
        :mod:`napari_pix2rep.segment.predict`)."""
        return bool(self.meta.get(FLIP_AVERAGE_KEY, False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores ``(N, K, H, W)`` of ``(N, C_in, H, W)``: ``head(backbone(x))``.

        A linear head and the backbone's output conv are both 1x1 convolutions with
        nothing between them, so they are folded into one ``(K, sum of C_i)`` projection
        of the decoder levels (:func:`~napari_pix2rep.model.nets.unet.project_levels`): the
        D-channel feature map is never built and only K channels are upsampled. The same
        result (and gradients) as the two convolutions in turn. A hypercolumn head
        projects every level of the U-Net the same way (the output conv is not used).
        """
        if isinstance(self.head, HypercolumnHead):
            return self.head(self.backbone.feature_levels(x))
        out, head = self.backbone.out, self.head.conv
        w_head = head.weight[:, :, 0, 0]  # (K, D)
        weight = (w_head @ out.weight[:, :, 0, 0])[:, :, None, None]  # (K, sum C_i, 1, 1)
        bias = head.bias if out.bias is None else head.bias + w_head @ out.bias
        return project_levels(self.backbone.decoder_levels(x), weight, bias)

    def file_dict(self) -> dict:
        return {
            "format": SEGMENTER,
            "version": FORMAT_VERSION,
            "arch": self.backbone.config.to_dict(),
            "preprocess": self.preprocess.to_dict(),
            "classes": list(self.classes),
            "state_dict": {k: v.detach().cpu() for k, v in self.backbone.state_dict().items()},
            "head": {
                "type": self.head_type,
                "state_dict": {k: v.detach().cpu() for k, v in self.head.state_dict().items()},
            },
            "meta": {**self.meta, "library": library_versions()},
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the segmenter file atomically."""
        return atomic_torch_save(self.file_dict(), path)

    @classmethod
    def from_dict(cls, obj: dict, name: str = "model file") -> Segmenter:
        """Build from a checked segmenter file dict (``name`` for messages)."""
        backbone = build_backbone(obj, name)
        head = obj.get("head")
        kind = head.get("type") if isinstance(head, dict) else None
        if not isinstance(kind, str) or kind not in HEAD_TYPES:
            raise ModelFileError(f"{name} has an unknown head type {kind!r}.")
        preprocess = PreprocessConfig.from_dict(obj["preprocess"])
        seg = cls(backbone, obj["classes"], preprocess, head=kind)
        try:
            seg.head.load_state_dict({k: v.float() for k, v in head["state_dict"].items()})
        except RuntimeError:
            raise ModelFileError(f"{name}: the head does not match its classes.") from None
        seg.meta = dict(obj.get("meta", {}))
        return seg

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> Segmenter:
        """Read a segmenter file (a backbone file is refused with one sentence)."""
        return cls.from_dict(load_model_file(path, expect="segmenter"), Path(path).name)


def is_segmenter_dict(obj: dict) -> bool:
    """Whether a model file dict holds a segmenter (else a backbone)."""
    return obj.get("format") == SEGMENTER


def backbone_from_dict(obj: dict, name: str = "model file") -> tuple[UNet, PreprocessConfig]:
    """The backbone and preprocessing of a checked backbone or segmenter file dict."""
    return build_backbone(obj, name), PreprocessConfig.from_dict(obj["preprocess"])


def load_backbone(path: str | os.PathLike) -> tuple[UNet, PreprocessConfig, dict]:
    """Backbone, preprocessing and metadata from a backbone (or segmenter) file."""
    obj = load_model_file(path, expect="backbone")
    return (*backbone_from_dict(obj, Path(path).name), dict(obj.get("meta", {})))
