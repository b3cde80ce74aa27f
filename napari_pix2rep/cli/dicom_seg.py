"""``pix2rep dicom-seg`` (a segmentation on a DICOM series' grid -> DICOM SEG files)."""

from __future__ import annotations

import argparse
import sys

from napari_pix2rep.cli.common import sigterm_interrupts


def add_dicom_seg(sub) -> None:
    p = sub.add_parser(
        "dicom-seg",
        help="Segmentation NIfTI on a DICOM series' grid -> one DICOM SEG per segmented frame.",
    )
    p.add_argument(
        "seg",
        metavar="SEG.nii.gz",
        help="Label map on the grid `pix2rep convert SERIES_FOLDER` gives (3D or 4D).",
    )
    p.add_argument(
        "--series",
        required=True,
        metavar="SERIES_FOLDER",
        help="The DICOM series the segmentation was made on (a folder, or one of its files).",
    )
    p.add_argument("--out-dir", required=True, metavar="DIR")
    p.add_argument(
        "--pick",
        metavar="UID",
        help="SeriesInstanceUID or series number, when SERIES_FOLDER holds several series.",
    )
    p.add_argument(
        "--frame",
        type=int,
        metavar="T",
        help="For a 3D segmentation of one phase of a cine: that phase (0 = the first).",
    )
    p.add_argument(
        "--classes",
        default=None,
        metavar="NAMES",
        help="Comma-separated class names, background first (default: background, RV, MYO, LV).",
    )
    p.add_argument(
        "--model",
        metavar="NAME",
        help="The model that made the segmentation (e.g. its file name), recorded in the SEG.",
    )
    p.add_argument(
        "--edited",
        action="store_true",
        help="The segmentation was painted or corrected by hand (algorithm type "
        "SEMIAUTOMATIC instead of AUTOMATIC).",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="Replace SEG files of the same names already in DIR (refused otherwise).",
    )
    p.set_defaults(func=cmd_dicom_seg)


@sigterm_interrupts
def cmd_dicom_seg(args: argparse.Namespace) -> int:
    from napari_pix2rep.core.classes import DEFAULT_CLASSES, parse_classes
    from napari_pix2rep.io.dicom_seg import write_dicom_seg
    from napari_pix2rep.io.nifti import read_nifti

    classes = parse_classes(args.classes) if args.classes else DEFAULT_CLASSES
    mask = read_nifti(args.seg, kind="labels")
    result = write_dicom_seg(
        mask,
        args.series,
        args.out_dir,
        classes=classes,
        model=args.model,
        edited=args.edited,
        frame=args.frame,
        pick=args.pick,
        overwrite=args.overwrite,
    )
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    for path, t in zip(result.paths, result.frames):
        print(f"{path}: phase {t}" if mask.is_4d or args.frame is not None else str(path))
    return 0
