"""``pix2rep convert`` (DICOM series to NIfTI) and ``pix2rep gui`` (napari with the dock)."""

from __future__ import annotations

import argparse

from napari_pix2rep.cli.common import CliError, sigterm_interrupts


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


def summary(vol) -> str:
    """What was converted, in words with units: phases, slices, pixels, voxel size (mm, in
    z, y, x order) and the time between phases (s), then the series."""
    s = vol.series
    shape = " x ".join(map(str, vol.shape[-2:]))
    z, y, x = vol.spacing[-3:]
    frames = f"{vol.n_frames} phases x " if vol.is_4d else ""
    timed = vol.is_4d and vol.header.get_xyzt_units()[1] == "sec"
    dt = f", {vol.spacing[0]:.3g} s between phases" if timed else ""
    dt = dt or (", no trigger times (phase interval unknown)" if vol.is_4d else "")
    desc = f" '{s.description}'" if s.description else ""
    skipped = f"; {vol.skipped} other files skipped" if vol.skipped else ""
    return (
        f"{frames}{vol.n_slices} slices of {shape} pixels, voxels {z:g} x {y:g} x {x:g} mm "
        f"(slice, row, column){dt}; series {s.number}{desc}, {s.uid}{skipped}"
    )


@sigterm_interrupts
def cmd_convert(args: argparse.Namespace) -> int:
    from napari_pix2rep.io.datafiles import is_nifti_path
    from napari_pix2rep.io.dicom import read_dicom
    from napari_pix2rep.io.errors import error_message
    from napari_pix2rep.io.nifti_write import write_nifti
    from napari_pix2rep.io.outputs import check_output_file, check_outputs

    check_output_file(args.out, example="cine.nii.gz")
    if not is_nifti_path(args.out):
        raise CliError(f"--out {args.out}: the file name must end with .nii or .nii.gz.")
    check_outputs([(args.out, "--out")], args.series, overwrite=True)
    try:
        vol = read_dicom(args.series, series=args.pick)
        write_nifti(args.out, vol.data, vol, kind="image")
    except MemoryError as e:
        raise CliError(
            error_message(
                e,
                oom="The computer {oom} converting the series: convert it on a machine "
                "with more memory, or pick a smaller series with --series.",
            )
        ) from None
    print(f"{args.out}: {summary(vol)}.")
    return 0


def add_gui(sub) -> None:
    p = sub.add_parser("gui", help="Open napari with the Pix2Rep dock (and the images).")
    p.add_argument("images", nargs="*", metavar="IMG")
    p.set_defaults(func=cmd_gui)


def cmd_gui(args: argparse.Namespace) -> int:
    from napari_pix2rep._qt.launcher import launch

    launch(args.images)
    return 0
