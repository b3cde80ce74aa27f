"""Slices for pretraining: prepare every slice of every frame of each image, crop.

Each file is read, normalised per 3D volume (each frame of a cine on its own) and
resampled in-plane to the model's spacing once; training then draws random slices and
random ``crop x crop`` windows from memory.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from napari_pix2rep.core.progress import Progress
from napari_pix2rep.model.preprocess import (
    PreprocessConfig,
    centred_pads,
    model_size,
    normalize_intensity,
    resample,
)


def prepare_slices(
    data: np.ndarray, spacing: Sequence[float], cfg: PreprocessConfig
) -> list[torch.Tensor]:
    """Every 2D slice of a ``(z, y, x)`` or ``(t, z, y, x)`` image on the model grid."""
    frames = data[None] if data.ndim == 3 else data
    out = []
    for frame in frames:
        x = torch.from_numpy(normalize_intensity(frame, cfg.clip_low, cfg.clip_high))[:, None]
        x = resample(x, model_size(frame.shape[-2:], tuple(spacing[-2:]), cfg))
        out.extend(s[0].clone() for s in x)
    return out


class SliceBank:
    """All prepared slices, each ``(H_i, W_i)`` float32, and random crops of them."""

    def __init__(self, slices: list[torch.Tensor], sources: list[str] | None = None) -> None:
        if not slices:
            raise ValueError("No slices to train on.")
        self.slices = slices
        self.sources = sources or []

    def __len__(self) -> int:
        return len(self.slices)

    @classmethod
    def from_arrays(
        cls, volumes: Iterable[tuple[np.ndarray, Sequence[float]]], cfg: PreprocessConfig
    ) -> SliceBank:
        slices: list[torch.Tensor] = []
        for data, spacing in volumes:
            slices.extend(prepare_slices(data, spacing, cfg))
        return cls(slices)

    def sample(self, n: int, crop: int, gen: torch.Generator) -> torch.Tensor:
        """``n`` random slices, each a random ``crop x crop`` window: ``(n, 1, crop, crop)``.

        Slices smaller than the crop are edge-padded. Uses only ``gen`` (CPU) for
        randomness, so a run is reproducible from the generator's state.
        """
        idx = torch.randint(len(self.slices), (n,), generator=gen)
        out = torch.empty(n, 1, crop, crop)
        for k, i in enumerate(idx.tolist()):
            s = self.slices[i]
            h, w = s.shape
            top = int(torch.randint(max(1, h - crop + 1), (1,), generator=gen))
            left = int(torch.randint(max(1, w - crop + 1), (1,), generator=gen))
            window = s[top : top + crop, left : left + crop][None, None]
            ph, pw = crop - window.shape[-2], crop - window.shape[-1]
            if ph or pw:
                window = F.pad(window, centred_pads(ph, pw), mode="replicate")
            out[k] = window[0]
        return out


def load_slices(
    volumes: Sequence[tuple[np.ndarray, Sequence[float], str]],
    files: Sequence[str | os.PathLike],
    cfg: PreprocessConfig,
    note: str = "",
) -> Generator[Progress, None, SliceBank]:
    """The :class:`SliceBank` of open volumes ``(data, spacing, name)`` and image ``files``
    (NIfTI or a DICOM series, read as images), yielding "loading" progress after each;
    ``note`` is added to the first message."""
    from napari_pix2rep.io.images import read_image

    total = len(volumes) + len(files)
    slices: list[torch.Tensor] = []
    sources: list[str] = []
    yield Progress("loading", 0, total, message=f"Preparing slices{note}")
    for i, (data, spacing, name) in enumerate(volumes):
        slices.extend(prepare_slices(np.asarray(data), tuple(spacing), cfg))
        sources.append(f"layer:{name}")
        yield Progress("loading", i + 1, total, message=f"Prepared {name}")
    for j, f in enumerate(files):
        vol = read_image(f, kind="image")
        slices.extend(prepare_slices(vol.data, vol.spacing, cfg))
        sources.append(str(f))
        yield Progress("loading", len(volumes) + j + 1, total, message=f"Read {Path(f).name}")
    return SliceBank(slices, sources)
