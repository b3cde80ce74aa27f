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

Files are written atomically (:func:`napari_pix2rep.io.outputs.atomic_write`).
"""

from __future__ import annotations

import os
import pickle
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import torch

from napari_pix2rep.io.errors import error_message
from napari_pix2rep.io.outputs import atomic_write
from napari_pix2rep.model.nets.unet import MAX_PARAMETERS, UNet, UNetConfig
from napari_pix2rep.model.preprocess import PreprocessConfig

FORMAT_VERSION = 1
BACKBONE = "napari-pix2rep/backbone"
SEGMENTER = "napari-pix2rep/segmenter"
KINDS = {BACKBONE: "backbone", SEGMENTER: "segmenter"}
#: Most classes a segmenter file may name.
MAX_CLASSES = 255


class ModelFileError(ValueError):
    """A model file that cannot be used, with one sentence saying why."""


def atomic_torch_save(obj: dict, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename it onto ``path``.

    A failure (disk full, ...) raises :class:`~napari_pix2rep.io.outputs.OutputError` naming
    the file; the previous file is intact and no temporary file is left.
    """
    return atomic_write(path, lambda fh: torch.save(obj, fh))


#: Bytes read to tell what a file that is not a model file is.
_SNIFF_BYTES = 1024
#: What the user is told to give instead.
_EXPECTED = "expected a .pt written by pix2rep pretrain or train"


def _looks_like_nifti(head: bytes) -> bool:
    """True when ``head`` starts with a NIfTI-1 or NIfTI-2 header (either byte order)."""
    sizeof = {int.from_bytes(head[:4], order) for order in ("little", "big")} if head else set()
    return (348 in sizeof and head[344:347] in (b"n+1", b"ni1")) or (
        540 in sizeof and head[4:7] in (b"n+2", b"ni2")
    )


def _what_else(path: Path) -> str | None:
    """What a file is when it is not a PyTorch file ("a NIfTI image", ...); None for a
    zip (``torch.save``'s format) or a pickle stream, which :func:`torch.load` opens."""
    with open(path, "rb") as fh:
        head = fh.read(_SNIFF_BYTES)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"\x80"):
        return None
    if head.startswith(b"\x1f\x8b"):
        try:
            inner = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, _SNIFF_BYTES)
        except zlib.error:
            inner = b""
        return "a NIfTI image" if _looks_like_nifti(inner) else "a gzip-compressed file"
    if _looks_like_nifti(head):
        return "a NIfTI image"
    if head[128:132] == b"DICM":
        return "a DICOM image"
    if b"\0" not in head:
        try:
            head.decode("utf-8")
            return "a text file"
        except UnicodeDecodeError as e:
            if e.start >= len(head) - 3:  # a multi-byte character cut by the read
                return "a text file"
    return "a file of another kind"


def load_model_file(path: str | os.PathLike, expect: str | None = None) -> dict:
    """Open a model file safely and check everything in it before anything is built.

    ``expect`` is "backbone" or "segmenter" (None accepts both). A segmenter file given
    where a backbone is expected is accepted (its backbone is used); the reverse is an
    error. The file is untrusted: its ``arch`` is bounded and every weight's shape is
    checked against it without building the network (:func:`check_model_dict`). Raises
    :class:`ModelFileError` with one clear sentence.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"Model file {path} does not exist.")
    try:
        other = _what_else(path)
    except OSError as e:
        raise ModelFileError(f"{path.name} cannot be read ({e.strerror or e}).") from None
    if other is not None:
        raise ModelFileError(
            f"{path.name} is not a napari-pix2rep model file: it is {other}, not a PyTorch "
            f"model ({_EXPECTED})."
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ModelFileError(
            f"{path.name} is not a napari-pix2rep model file or is corrupt (it holds objects "
            "other than plain weights, which are never loaded)."
        ) from None
    except MemoryError:
        raise
    except Exception as e:  # a damaged zip or pickle raises almost anything
        plain = isinstance(e, RuntimeError | EOFError | zipfile.BadZipFile | OSError | ValueError)
        reason = error_message(e, clause=True, limit=80) if plain and str(e).strip() else None
        reason = reason or "its contents cannot be read"
        raise ModelFileError(
            f"{path.name} is not a napari-pix2rep model file or is corrupt ({reason})."
        ) from None
    fmt = obj.get("format") if isinstance(obj, dict) else None
    if not isinstance(fmt, str) or fmt not in KINDS:
        raise ModelFileError(
            f"{path.name} is a PyTorch file but not a napari-pix2rep model file ({_EXPECTED})."
        )
    version = obj.get("version", 0)
    if type(version) is not int:
        raise ModelFileError(f"{path.name} has an invalid format version {version!r}.")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path.name} was written by a newer napari-pix2rep (format {version}); "
            "update the plugin."
        )
    kind = KINDS[fmt]
    if expect == "segmenter" and kind != "segmenter":
        raise ModelFileError(
            f"{path.name} is a pretrained backbone, not a segmenter: train one first "
            "(pix2rep train, or Segment in the dock)."
        )
    check_model_dict(obj, path.name)
    return obj


def check_model_dict(obj: dict, source: str = "model file") -> None:
    """Raise :class:`ModelFileError` unless every part of a loaded model file is usable.

    Checks the architecture (bounded, at most :data:`MAX_PARAMETERS`), every backbone
    weight's key, shape and dtype against it, the preprocessing block, and for a
    segmenter its classes and head ``conv.weight (K, D, 1, 1)``, ``conv.bias (K,)`` (D
    the backbone's ``out_channels`` for a ``"linear"`` head, the channels of all its
    levels, ``sum(level_widths)``, for a ``"hypercolumn"`` one: :data:`HEAD_INPUTS`).
    """
    config = arch_config(obj, source)
    check_state_dict(expected_state(config, source), obj.get("state_dict"), source)
    try:
        preprocess = PreprocessConfig.from_dict(obj.get("preprocess"))
    except (TypeError, ValueError) as e:
        raise ModelFileError(
            f"{source} has unusable preprocessing settings ({error_message(e, clause=True)})."
        ) from None
    if preprocess.channels != config.in_channels:
        raise ModelFileError(
            f"{source} is inconsistent: its network reads {config.in_channels} input "
            f"channel(s) but its preprocessing gives {preprocess.channels}."
        )
    for key in ("meta", "resume"):
        if not isinstance(obj.get(key, {}), dict):
            raise ModelFileError(f"{source} is damaged: its {key!r} entry is not a dict.")
    if obj["format"] != SEGMENTER:
        return
    classes = obj.get("classes")
    if (
        not isinstance(classes, list)
        or not 2 <= len(classes) <= MAX_CLASSES
        or not all(isinstance(c, str) and 0 < len(c) <= 100 for c in classes)
    ):
        raise ModelFileError(f"{source} is damaged: its classes must be 2 to {MAX_CLASSES} names.")
    head = obj.get("head")
    kind = head.get("type") if isinstance(head, dict) else None
    if not isinstance(kind, str) or kind not in HEAD_INPUTS:
        raise ModelFileError(f"{source} has an unknown head type {kind!r}.")
    k, d = len(classes), HEAD_INPUTS[kind](config)
    expected = {"conv.weight": torch.Size((k, d, 1, 1)), "conv.bias": torch.Size((k,))}
    check_state_dict(expected, head.get("state_dict"), f"{source} (head)")


#: Input channels of each head type a segmenter file may hold (``head["type"]``; the
#: types of :data:`napari_pix2rep.model.nets.heads.HEAD_TYPES`): a linear head reads the
#: backbone's D-channel output, a hypercolumn head every level of the U-Net.
HEAD_INPUTS: dict[str, Callable[[UNetConfig], int]] = {
    "linear": lambda config: config.out_channels,
    "hypercolumn": lambda config: sum(config.level_widths),
}


def arch_config(obj: dict, source: str = "model file") -> UNetConfig:
    """The model file's ``arch`` as a :class:`UNetConfig`, every value bounded."""
    try:
        config = UNetConfig.from_dict(dict(obj["arch"]))
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFileError(
            f"{source} describes an unknown architecture ({error_message(e, clause=True)})."
        ) from None
    return config


def expected_state(config: UNetConfig, source: str = "model file") -> dict[str, torch.Size]:
    """Key and shape of every tensor of the U-Net's ``state_dict``, computed on the meta
    device (nothing is allocated). Raises :class:`ModelFileError` above
    :data:`MAX_PARAMETERS`."""
    with torch.device("meta"):
        net = UNet(config)
    n = sum(p.numel() for p in net.parameters())
    if n > MAX_PARAMETERS:
        raise ModelFileError(
            f"{source} describes a U-Net of {n / 1e6:,.0f} M parameters, more than "
            f"the {MAX_PARAMETERS / 1e6:,.0f} M allowed: the file is damaged or not "
            "napari-pix2rep's."
        )
    return {k: v.shape for k, v in net.state_dict().items()}


def check_state_dict(
    expected: dict[str, torch.Size], state: object, source: str = "model file"
) -> None:
    """Raise :class:`ModelFileError` unless ``state`` maps exactly ``expected``'s keys to
    tensors of those shapes (floating point for all but BatchNorm's counters) with
    finite values."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelFileError(f"{source} is damaged: its weights are not a dict of tensors.")
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if state[k].shape != expected[k])
    if missing or extra or wrong:
        if wrong:
            k = wrong[0]
            what = f"{k} is {tuple(state[k].shape)}, the architecture needs {tuple(expected[k])}"
        else:
            what = f"{'missing' if missing else 'unexpected'} {(missing or extra)[0]}"
        raise ModelFileError(
            f"{source} was made for a different architecture than it declares, or is "
            f"damaged (first mismatch: {what})."
        )
    for k, v in state.items():
        counter = k.endswith("num_batches_tracked")
        if counter == v.is_floating_point():
            raise ModelFileError(f"{source} is damaged: {k} holds {v.dtype} values.")
        if not counter and not bool(v.isfinite().all()):
            raise ModelFileError(f"{source} is damaged: {k} holds NaN or infinite values.")


def build_backbone(obj: dict, source: str = "model file") -> UNet:
    """The U-Net described by a model file's ``arch``, with its weights loaded (float32).

    Everything is checked (:func:`arch_config`, :func:`check_state_dict`) before the
    network is built.
    """
    config = arch_config(obj, source)
    check_state_dict(expected_state(config, source), obj.get("state_dict"), source)
    net = UNet(config)
    state = {k: v.float() if v.is_floating_point() else v for k, v in obj["state_dict"].items()}
    net.load_state_dict(state)
    return net


SHIPPED_BACKBONE = "pix2rep_small_acdc.pt"
#: The default cardiac segmenter (segments without painting; models/README.md).
SHIPPED_SEGMENTER = "pix2rep_cardiac_acdc.pt"


def models_dir() -> Path:
    """Folder of the shipped models (``models/`` of the repo; a copy inside a wheel)."""
    return Path(__file__).parents[1] / "_models"


def default_backbone_path() -> Path:
    """The shipped backbone, or ``$NAPARI_PIX2REP_MODEL`` when that is set."""
    env = os.environ.get("NAPARI_PIX2REP_MODEL")
    path = Path(env) if env else models_dir() / SHIPPED_BACKBONE
    if not path.is_file():
        raise ModelFileError(
            f"No backbone found at {path}; pass one with --model (or pretrain one)."
        )
    return path


def default_segmenter_path() -> Path | None:
    """The shipped default cardiac segmenter, or ``$NAPARI_PIX2REP_SEGMENTER`` when that is
    set (an empty value: none); None when there is none."""
    env = os.environ.get("NAPARI_PIX2REP_SEGMENTER")
    if env is not None:
        return Path(env) if env else None
    path = models_dir() / SHIPPED_SEGMENTER
    return path if path.is_file() else None


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

    from napari_pix2rep import __version__

    return {
        "napari_pix2rep": __version__,
        "torch": str(torch.__version__),
        "numpy": str(numpy.__version__),
    }
