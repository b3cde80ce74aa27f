"""The ``pix2rep`` console script; its commands and options are listed in README.md
(*Command line*, *DICOM*, *DICOM SEG export*).

Every command is a thin layer over the library: ``pretrain``, ``train``, ``predict`` and
``segment`` drive the jobs the dock drives (:mod:`napari_pix2rep.jobs`; ``predict`` and
``segment`` run the one Segment recipe, :mod:`napari_pix2rep.segment.recipe`), with
Ctrl-C and SIGTERM as their stop signal. Heavy modules are imported inside the command so
that ``pix2rep --help`` is instant. Errors print one sentence to stderr and exit
non-zero; outputs are checked before any work (against the inputs with
:func:`napari_pix2rep.io.outputs.check_outputs`) and files are only ever replaced
atomically. One module per command group: :mod:`.pretrain` (pretrain),
:mod:`.segmentation` (train, predict), :mod:`.segment` (segment), :mod:`.measure`
(evaluate, measure), :mod:`.convert` (convert, gui), :mod:`.dicom_seg` (dicom-seg);
:mod:`.common` holds what they share.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from napari_pix2rep.cli.common import EXIT_ERROR, EXIT_INTERRUPTED, CliError
from napari_pix2rep.cli.convert import add_convert, add_gui
from napari_pix2rep.cli.dicom_seg import add_dicom_seg
from napari_pix2rep.cli.measure import add_evaluate, add_measure
from napari_pix2rep.cli.pretrain import add_pretrain
from napari_pix2rep.cli.segment import add_segment
from napari_pix2rep.cli.segmentation import add_predict, add_train

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pix2rep",
        description="Few-shot cardiac MRI segmentation from Pix2Rep representations.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (
        add_pretrain,
        add_train,
        add_predict,
        add_segment,
        add_evaluate,
        add_measure,
        add_gui,
        add_convert,
        add_dicom_seg,
    ):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CliError, ValueError, FileNotFoundError, FloatingPointError, OSError) as e:
        print(f"pix2rep {args.command}: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except (RuntimeError, MemoryError) as e:  # out of memory, or torch refusing an input
        from napari_pix2rep.io.errors import error_message

        text = error_message(
            e,
            oom="the computer {oom}: try a smaller --batch-size, --device cpu, or fewer or "
            "smaller images.",
        )
        print(f"pix2rep {args.command}: error: {text}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(
            f"pix2rep {args.command}: interrupted; files already saved are intact.",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
