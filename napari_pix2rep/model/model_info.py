"""What a model file is, from its metadata: kind, pretraining steps, data, origin.

The dock's model box shows this for the active model and warns when a backbone saw far
fewer pretraining steps than the shipped one (a cancelled test run is no replacement).
The file is opened memory-mapped (``torch.load(mmap=True, weights_only=True)``), so the
weights are not read here; the job that uses the model loads them once. Results are
cached per (path, modification time, size). No Qt.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from napari_pix2rep.model.checkpoint import FORMAT_VERSION, KINDS, ModelFileError, load_model_file

#: A backbone below this fraction of the reference's pretraining steps gets a warning.
UNDERTRAINED_FRACTION = 0.25
#: How many ``init`` links (a run started from another model file) are followed.
MAX_INIT_DEPTH = 8


@dataclass(frozen=True)
class ModelInfo:
    """A model file's summary.

    ``steps`` counts this file's own pretraining run; ``total_steps`` adds the steps of
    the model it started from (``init``) when that file can be read, else it is None
    for a run started from another model (unknown history).
    """

    path: Path  # resolved
    kind: str  # "backbone" or "segmenter"
    method: str | None
    steps: int | None
    total_steps: int | None
    n_slices: int | None
    data: str
    init: str | None
    classes: tuple[str, ...] = ()
    mode: str | None = None


def _open_lazily(path: Path) -> dict:
    """The file's dict with memory-mapped tensors; ``load_model_file``'s one-sentence
    :class:`ModelFileError` for anything that is not a usable model file."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not a zip checkpoint, corrupt, unsafe: the full check says which
        obj = None
    if (
        not isinstance(obj, dict)
        or obj.get("format") not in KINDS
        or int(obj.get("version", 0)) > FORMAT_VERSION
    ):
        obj = load_model_file(path)  # raises with the sentence for this file
    return obj


def describe_sources(sources: list[str], n_slices: int | None = None) -> str:
    """``meta["data"]`` (``layer:NAME`` entries and file paths) in a few words.

    >>> describe_sources(["layer:scan", "/d/acdc/p1/a.nii.gz", "/d/acdc/p2/b.nii.gz"], 40)
    '1 open image (scan) and 2 files in /d/acdc, 40 slices'
    """
    layers = [s.split(":", 1)[1] for s in sources if s.startswith("layer:")]
    files = [s for s in sources if not s.startswith("layer:")]
    parts = []
    if layers:
        names = ", ".join(layers[:3]) + (", …" if len(layers) > 3 else "")
        parts.append(f"{len(layers)} open image{'s' if len(layers) > 1 else ''} ({names})")
    if files:
        try:
            where = os.path.commonpath([str(Path(f).parent) for f in files])
        except ValueError:  # different drives
            where = ""
        what = f"{len(files)} file{'s' if len(files) > 1 else ''}"
        parts.append(f"{what} in {where}" if where else what)
    text = " and ".join(parts) or "unknown data"
    return f"{text}, {n_slices} slices" if n_slices else text


@lru_cache(maxsize=64)
def _cached(path: str, _mtime_ns: int, _size: int, depth: int) -> ModelInfo:
    p = Path(path)
    obj = _open_lazily(p)
    meta = dict(obj.get("meta") or {})
    kind = KINDS[obj["format"]]
    steps = meta.get("steps")
    steps = int(steps) if steps is not None else None
    init = meta.get("init") or None
    total = steps
    if init is not None and steps is not None:
        parent = _init_info(str(init), p.parent, depth)
        total = steps + parent.total_steps if parent and parent.total_steps is not None else None
    n_slices = meta.get("n_slices")
    return ModelInfo(
        path=p,
        kind=kind,
        method=meta.get("method"),
        steps=steps,
        total_steps=total,
        n_slices=int(n_slices) if n_slices is not None else None,
        data=describe_sources([str(s) for s in meta.get("data", [])], n_slices),
        init=str(init) if init is not None else None,
        classes=tuple(obj.get("classes", ())),
        mode=meta.get("mode"),
    )


def _init_info(init: str, folder: Path, depth: int) -> ModelInfo | None:
    """The model a run started from (path as recorded, else beside the file), if readable."""
    if depth >= MAX_INIT_DEPTH:
        return None
    for candidate in (Path(init), folder / Path(init).name):
        if candidate.is_file():
            try:
                return _read(candidate, depth + 1)
            except ModelFileError:
                return None
    return None


def _read(path: Path, depth: int) -> ModelInfo:
    if not path.is_file():
        raise ModelFileError(f"Model file {path} does not exist.")
    st = path.stat()
    return _cached(str(path.resolve()), st.st_mtime_ns, st.st_size, depth)


def read_model_info(path: str | os.PathLike) -> ModelInfo:
    """A model file's :class:`ModelInfo` (``path`` resolved; its weights are not read).

    Raises :class:`~napari_pix2rep.model.checkpoint.ModelFileError` with one sentence when the
    file is missing or not a napari-pix2rep model file.
    """
    return _read(Path(path), 0)


def summary(info: ModelInfo) -> str:
    """One line: what the model is, how long it was pretrained and on what."""
    if info.kind == "segmenter":
        how = {"linear": "linear probe", "finetune": "fine-tuned"}.get(info.mode or "", "")
        classes = ", ".join(info.classes)
        return f"Segmenter{f' ({how})' if how else ''} for {classes}."
    method = info.method or "backbone"
    if info.steps is None:
        return f"Backbone ({method}); its pretraining steps are not recorded."
    steps = f"{info.steps:,} steps".replace(",", " ")
    if info.init:
        base = f"{info.total_steps:,}".replace(",", " ") if info.total_steps is not None else "?"
        steps += f" on top of {Path(info.init).name} ({base} in all)"
    return f"Backbone ({method}), {steps}, on {info.data}."


def undertrained_warning(info: ModelInfo, reference: ModelInfo | None) -> str | None:
    """One sentence when a backbone saw far fewer pretraining steps than ``reference``
    (the shipped backbone); None when it did not or when either count is unknown."""
    if reference is None or info.kind != "backbone" or info.path == reference.path:
        return None
    ref, own = reference.total_steps, info.total_steps
    if not ref or own is None or own >= UNDERTRAINED_FRACTION * ref:
        return None
    return (
        f"Far less trained than the shipped backbone ({own} vs {ref} pretraining steps): "
        "expect poor segmentations; press Shipped to go back to it."
    )
