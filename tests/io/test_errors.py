"""Tests of napari_pix2rep.io.errors."""

from __future__ import annotations

import numpy as np
import pytest

from napari_pix2rep.annotate.annotations import AnnotationError
from napari_pix2rep.io.errors import error_message
from napari_pix2rep.io.nifti import NiftiError
from napari_pix2rep.model.checkpoint import ModelFileError


def test_error_message_is_one_sentence():
    class OutOfMemoryError(RuntimeError):
        pass

    assert error_message(AnnotationError("No annotated slice: paint one.")) == (
        "No annotated slice: paint one."
    )
    assert error_message(ModelFileError("x.pt is not a model file")) == "x.pt is not a model file."
    assert error_message(NiftiError("a.nii is empty.\nmore")) == "a.nii is empty."
    oom = error_message(OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert "ran out of memory" in oom and "\n" not in oom
    assert error_message(RuntimeError("boom")) == "RuntimeError: boom."
    assert error_message(KeyError("arch")).startswith("KeyError: missing entry")
    assert error_message(ValueError("")) == "ValueError."
    assert len(error_message(ValueError("x" * 1000))) <= 300


def test_out_of_memory_is_one_sentence_with_the_amount():
    import torch

    for make, amount in [
        (lambda: np.empty((2**22, 2**30), np.float32), "16.0 PiB"),  # numpy MemoryError
        (lambda: torch.empty(2**50), "4.0 PiB"),  # PyTorch's CPU allocator
    ]:
        with pytest.raises((MemoryError, RuntimeError)) as e:
            make()
        assert error_message(e.value) == (
            f"The device ran out of memory ({amount} was asked for): use a smaller preset "
            "or batch size, or choose the CPU."
        )
    assert error_message(MemoryError()).startswith("The device ran out of memory: use")


def test_the_same_helper_gives_clauses_and_each_callers_memory_advice():
    assert error_message(ValueError("Bad gzip file.\ndetails"), clause=True) == "Bad gzip file"
    assert error_message(EOFError(), clause=True) == "EOFError"
    assert error_message(RuntimeError("x" * 500), clause=True, limit=80) == "x" * 80
    advice = "the computer {oom}: try --device cpu."
    assert (
        error_message(MemoryError(), oom=advice)
        == "the computer ran out of memory: try --device cpu."
    )
    assert error_message(ValueError("fine."), oom=advice) == "fine."


def test_every_copy_goes_through_the_one_helper():
    """No module but io/errors turns an exception's text into a first line by itself."""
    import re
    from pathlib import Path

    import napari_pix2rep

    root = Path(napari_pix2rep.__file__).parent
    own = re.compile(r"str\((e|exc|err)\)\.strip\(\)\.(splitlines|rstrip)")
    copies = [
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if p.name != "errors.py" and own.search(p.read_text(encoding="utf-8"))
    ]
    assert copies == []
