"""``pix2rep convert`` (DICOM series to NIfTI) and ``pix2rep gui`` (napari with the dock)."""

from __future__ import annotations

import argparse

from .common import sigterm_interrupts


def add_convert(sub) -> None:
    p = sub.add_parser("convert", help="DICOM series -> NIfTI (4D cine or 3D).")
    p.add_argument(
        "series",
        nargs="+",
        metavar="SERIES",
        help="Folders and/or DICOM files that together hold one series (a file stands for "
        "its whole series in its folder).",
    )
    p.add_argument("--out", required=True, metavar="OUT.nii.gz")
    p.add_argument(
        "--series",
        dest="pick",
        metavar="UID",
        help="SeriesInstanceUID or series number, when the inputs hold several series.",
    )
    p.set_defaults(func=cmd_convert)


@sigterm_interrupts
def cmd_convert(args: argparse.Namespace) -> int:
    from ..dicom import read_dicom
    from ..nifti_write import write_nifti
    from ..outputs import check_output_file

    check_output_file(args.out)
    vol = read_dicom(args.series, series=args.pick)
    write_nifti(args.out, vol.data, vol, kind="image")
    s = vol.series
    shape = " x ".join(map(str, vol.shape[-2:]))
    frames = f"{vol.n_frames} phases x " if vol.is_4d else ""
    desc = f" '{s.description}'" if s.description else ""
    skipped = f"; {vol.skipped} other files skipped" if vol.skipped else ""
    print(
        f"{args.out}: {frames}{vol.n_slices} slices of {shape} pixels, spacing "
        f"{', '.join(f'{v:g}' for v in vol.spacing)} (series {s.number}{desc}, {s.uid}{skipped})."
    )
    return 0


def add_gui(sub) -> None:
    p = sub.add_parser("gui", help="Open napari with the Pix2Rep dock (and the images).")
    p.add_argument("images", nargs="*", metavar="IMG")
    p.set_defaults(func=cmd_gui)


def cmd_gui(args: argparse.Namespace) -> int:
    from .._qt.launcher import launch

    launch(args.images)
    return 0
