"""A configurable 2D U-Net that outputs a dense feature map at input resolution.

Input ``(N, C_in, H, W)`` with H and W multiples of ``2 ** depth``; output
``(N, D, H, W)`` (D = ``out_channels``), the pixel representations that Pix2Rep learns.

Presets
-------
``tiny``
    depth 3, widths 8-16-32-64, hypercolumn of 2 levels, D = 16: tests and smoke runs only.
``small`` (default)
    depth 4, widths 16-32-64-128-256, BatchNorm, about 2.0 M parameters; the output
    1x1 conv reads a hypercolumn (the full-resolution decoder features and the two
    coarser decoder levels upsampled, 16 + 32 + 64 channels) and gives D = 64. Without
    the hypercolumn the features would have rank 16 (the width at full resolution),
    which measurably starved the linear probe.
    Chosen so that one Pix2Rep step (two views of 8 slices at 128x128, forward and
    backward, augmentation and loss included) stays within ~0.7 s on a 2-core CPU, and a
    10-slice 256x256 volume predicts within ~1 s. Measured figures: README "Speed".
``paper``
    the authors' backbone: depth 5, widths 64 ... 2048, D = 1024 (about 135 M parameters);
    needs a GPU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn
from torch.nn import functional as F

NORMS = ("batch", "instance", "group", "none")

#: Allowed range of each integer setting (model files are untrusted: an ``arch`` outside
#: these is refused before anything is built). ``paper`` is the largest preset.
LIMITS: dict[str, tuple[int, int]] = {
    "in_channels": (1, 16),
    "base_channels": (1, 512),
    "depth": (1, 8),
    "max_channels": (1, 4096),
    "out_channels": (1, 4096),
    "hypercolumn": (0, 7),
}
#: Most parameters a U-Net may have (``paper`` has about 135 M).
MAX_PARAMETERS = 500_000_000


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of :class:`UNet`; stored in every model file."""

    in_channels: int = 1
    base_channels: int = 16
    depth: int = 4
    max_channels: int = 256
    out_channels: int = 64
    norm: str = "batch"
    hypercolumn: int = 0  # decoder levels below full resolution also feeding the output

    def __post_init__(self) -> None:
        if not isinstance(self.norm, str) or self.norm not in NORMS:
            raise ValueError(f"Unknown normalisation {self.norm!r}: use one of {NORMS}.")
        for name, (lo, hi) in LIMITS.items():
            value = getattr(self, name)
            if type(value) is not int or not lo <= value <= hi:
                raise ValueError(
                    f"{name} must be a whole number from {lo} to {hi}, not {value!r}."
                )
        if not 0 <= self.hypercolumn < self.depth:
            raise ValueError("hypercolumn must be between 0 and depth - 1.")

    @property
    def widths(self) -> list[int]:
        """Channels at each resolution level, from full resolution to the bottleneck."""
        return [min(self.base_channels * 2**i, self.max_channels) for i in range(self.depth + 1)]

    @property
    def level_widths(self) -> list[int]:
        """Channels of :meth:`UNet.feature_levels`: the bottleneck, then every decoder
        level from the coarsest to full resolution (``widths`` reversed)."""
        return self.widths[::-1]

    @property
    def stride(self) -> int:
        """Input sizes must be multiples of this."""
        return 2**self.depth

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> UNetConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"Unknown U-Net settings {sorted(unknown)}.")
        return cls(**d)


#: The presets, by the names of :data:`napari_pix2rep.core.choices.PRESET_NAMES`.
PRESETS: dict[str, UNetConfig] = {
    "small": UNetConfig(hypercolumn=2),
    "paper": UNetConfig(base_channels=64, depth=5, max_channels=2048, out_channels=1024),
    "tiny": UNetConfig(base_channels=8, depth=3, max_channels=64, out_channels=16, hypercolumn=1),
}


def preset(name: str) -> UNetConfig:
    """The named preset (:data:`napari_pix2rep.core.choices.PRESET_NAMES`)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"Unknown preset {name!r}: use one of {', '.join(PRESETS)}.") from None


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    return nn.Identity()


class ConvBlock(nn.Sequential):
    """Two (3x3 conv, norm, ReLU) layers: ``(N, c_in, H, W) -> (N, c_out, H, W)``."""

    def __init__(self, c_in: int, c_out: int, norm: str) -> None:
        bias = norm == "none"
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=bias),
            _norm(norm, c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=bias),
            _norm(norm, c_out),
            nn.ReLU(inplace=True),
        )


class UNet(nn.Module):
    """Dense U-Net: ``(N, in_channels, H, W) -> (N, out_channels, H, W)``."""

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or UNetConfig()
        w = self.config.widths
        norm = self.config.norm
        self.down = nn.ModuleList([ConvBlock(self.config.in_channels, w[0], norm)])
        self.down.extend(ConvBlock(w[i], w[i + 1], norm) for i in range(self.config.depth))
        self.up = nn.ModuleList(
            ConvBlock(w[i + 1] + w[i], w[i], norm) for i in reversed(range(self.config.depth))
        )
        self.out = nn.Conv2d(sum(w[: self.config.hypercolumn + 1]), self.config.out_channels, 1)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Encoder outputs at every level, full resolution first; the last is the bottleneck
        ``(N, widths[-1], H / stride, W / stride)``."""
        stride = self.config.stride
        if x.shape[-1] % stride or x.shape[-2] % stride:
            raise ValueError(
                f"Input size {tuple(x.shape[-2:])} is not a multiple of {stride}; pad it first."
            )
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        return skips

    def feature_levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every level of the network's features, coarsest first: the bottleneck
        ``(N, widths[-1], H / stride, W / stride)``, then the output of every decoder
        block, ``(N, widths[i], H / 2**i, W / 2**i)`` for ``i = depth - 1, ..., 0`` (the
        last at full resolution); channels :attr:`UNetConfig.level_widths`."""
        skips = self.encode(x)
        x = skips.pop()
        levels = [x]
        for block in self.up:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
            levels.append(x)
        return levels

    def decoder_levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The decoder outputs that feed the output conv: the ``hypercolumn`` coarser
        levels (coarsest first), then the full-resolution ``(N, widths[0], H, W)``."""
        levels = self.feature_levels(x)
        return levels[len(levels) - 1 - self.config.hypercolumn :]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        levels = self.decoder_levels(x)
        size = levels[-1].shape[-2:]
        column = [
            F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in levels[:-1]
        ]
        return self.out(torch.cat([*column, levels[-1]], dim=1) if column else levels[-1])


def project_levels(
    levels: list[torch.Tensor], weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """A 1x1 conv ``weight`` ``(D, sum of C_i, 1, 1)`` of the channel concatenation of
    ``levels`` ``(N, C_i, H_i, W_i)`` (in that order), each upsampled bilinearly to the
    last one's ``(H, W)``: ``(N, D, H, W)``.

    A 1x1 conv commutes with bilinear upsampling (both are linear and the interpolation
    weights sum to 1), so each level is projected at its own resolution and then
    upsampled: the same result as :meth:`UNet.forward`'s upsample-concatenate-project,
    with no full-resolution concatenation and only D channels upsampled. It pays when D
    is small: a segmenter folds its class head in (D = K), which made predicting a
    10-slice 256x256 volume 0.86 s instead of 1.47 s on the 2-core CPU of
    docs/benchmarks.md; for the backbone's 64 channels both ways cost about the same, and
    :meth:`UNet.forward` keeps the concatenation.
    """
    full = levels[-1]
    start = weight.shape[1] - full.shape[1]
    y = F.conv2d(full, weight[:, start:], bias)
    offset = 0
    for f in levels[:-1]:
        z = F.conv2d(f, weight[:, offset : offset + f.shape[1]])
        y = y + F.interpolate(z, size=full.shape[-2:], mode="bilinear", align_corners=False)
        offset += f.shape[1]
    return y
