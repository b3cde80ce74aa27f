"""Model files: one ``.pt`` per model, opened with ``torch.load(weights_only=True)``.

A model file is a dict of plain values and tensors::

    {"format": "napari-pix2rep/backbone" | "napari-pix2rep/segmenter",
     "version": 1,
     "arch": UNetConfig.to_dict(),
     "preprocess": PreprocessConfig.to_dict(),
     "state_dict": backbone weights (float32, or float16 in shipped files),
     "classes": [...], "head": {...}          # segmenters only
     "meta": {data, steps, loss history, library versions, ...},
     "resume": {...}}                          # pretraining state, optional

Files are written atomically: a temporary file in the target folder, then ``os.replace``.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch

from .nets.unet import UNet, UNetConfig
from .outputs import atomic_write

FORMAT_VERSION = 1
BACKBONE = "napari-pix2rep/backbone"
SEGMENTER = "napari-pix2rep/segmenter"
KINDS = {BACKBONE: "backbone", SEGMENTER: "segmenter"}


class ModelFileError(ValueError):
    """A model file that cannot be used, with one sentence saying why."""


def atomic_torch_save(obj: dict, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename it onto ``path``.

    A failure (disk full, ...) raises :class:`~napari_pix2rep.outputs.OutputError` naming
    the file; the previous file is intact and no temporary file is left.
    """
    return atomic_write(path, lambda fh: torch.save(obj, fh))


def load_model_file(path: str | os.PathLike, expect: str | None = None) -> dict:
    """Open a model file safely and check what it is.

    ``expect`` is "backbone" or "segmenter" (None accepts both). A segmenter file given
    where a backbone is expected is accepted (its backbone is used); the reverse is an
    error. Raises :class:`ModelFileError` with one clear sentence.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"Model file {path} does not exist.")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ModelFileError(
            f"{path.name} is not a napari-pix2rep model file or is corrupt (it holds objects "
            "other than plain weights, which are never loaded)."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        reason = str(e).strip().splitlines()[0][:80] if str(e).strip() else type(e).__name__
        raise ModelFileError(
            f"{path.name} is not a napari-pix2rep model file or is corrupt ({reason})."
        ) from None
    if not isinstance(obj, dict) or obj.get("format") not in KINDS:
        raise ModelFileError(f"{path.name} is not a napari-pix2rep model file.")
    if int(obj.get("version", 0)) > FORMAT_VERSION:
        raise ModelFileError(
            f"{path.name} was written by a newer napari-pix2rep (format {obj['version']}); "
            "update the plugin."
        )
    kind = KINDS[obj["format"]]
    if expect == "segmenter" and kind != "segmenter":
        raise ModelFileError(
            f"{path.name} is a pretrained backbone, not a segmenter: train one first "
            "(pix2rep train, or Segment in the dock)."
        )
    return obj


def build_backbone(obj: dict, source: str = "model file") -> UNet:
    """The U-Net described by a model file's ``arch``, with its weights loaded (float32)."""
    try:
        config = UNetConfig.from_dict(dict(obj["arch"]))
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFileError(f"{source} describes an unknown architecture ({e}).") from None
    net = UNet(config)
    state = {k: v.float() if v.is_floating_point() else v for k, v in obj["state_dict"].items()}
    check_state_dict(net, state, source)
    net.load_state_dict(state)
    return net


def check_state_dict(net: torch.nn.Module, state: dict, source: str = "model file") -> None:
    """Raise :class:`ModelFileError` unless ``state`` fits ``net`` key for key, shape for shape."""
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or extra or wrong:
        what = (missing or extra or wrong)[0]
        raise ModelFileError(
            f"{source} was made for a different architecture (first mismatch: {what})."
        )


SHIPPED_BACKBONE = "pix2rep_small_acdc.pt"


def models_dir() -> Path:
    """Folder of the shipped models (``models/`` of the repo; a copy inside a wheel)."""
    return Path(__file__).parent / "_models"


def default_backbone_path() -> Path:
    """The shipped backbone, or ``$NAPARI_PIX2REP_MODEL`` when that is set."""
    env = os.environ.get("NAPARI_PIX2REP_MODEL")
    path = Path(env) if env else models_dir() / SHIPPED_BACKBONE
    if not path.is_file():
        raise ModelFileError(
            f"No backbone found at {path}; pass one with --model (or pretrain one)."
        )
    return path


def half_state_dict(state: dict) -> dict:
    """Float tensors to float16 (for small shipped files); others unchanged."""
    return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}


def shipped_copy(obj: dict, half: bool = True) -> dict:
    """A backbone file for users: no optimiser/RNG ``resume`` state, fp16 weights if ``half``.

    Loading casts the weights back to float32 (:func:`build_backbone`).
    """
    out = {k: v for k, v in obj.items() if k != "resume"}
    out["state_dict"] = half_state_dict(obj["state_dict"]) if half else dict(obj["state_dict"])
    out["meta"] = {**obj.get("meta", {}), "weights_dtype": "float16" if half else "float32"}
    return out


def library_versions() -> dict:
    import numpy

    from . import __version__

    return {
        "napari_pix2rep": __version__,
        "torch": str(torch.__version__),
        "numpy": str(numpy.__version__),
    }
