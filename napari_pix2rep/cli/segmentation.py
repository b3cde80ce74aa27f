"""``pix2rep train`` and ``pix2rep predict``: the dock's training and prediction jobs
(:func:`jobs.train_job`, :func:`jobs.predict_job`) on files."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

from napari_pix2rep.cli.common import (
    SIDECAR_HELP,
    CliError,
    StopOnSignal,
    add_device,
    add_training_flags,
    cores_to_leave,
    sigterm_interrupts,
    training_flags,
)
from napari_pix2rep.core.classes import DEFAULT_CLASSES
from napari_pix2rep.core.progress import Progress, format_duration


class Stopped(KeyboardInterrupt):
    """A job stopped by Ctrl-C or SIGTERM at a step boundary: exit 130, nothing written."""


# -- train -------------------------------------------------------------------------------
def add_train(sub) -> None:
    p = sub.add_parser("train", help="Train a segmenter from annotated slices.")
    p.add_argument("--image", action="append", required=True, metavar="IMG")
    p.add_argument(
        "--labels",
        action="append",
        required=True,
        metavar="LAB",
        help=f"Labels on the image's grid; one --labels per --image. {SIDECAR_HELP}",
    )
    p.add_argument("--out", required=True, metavar="SEG.pt")
    p.add_argument(
        "--model",
        metavar="BACKBONE.pt",
        help="Pretrained backbone (default: the shipped one), or a segmenter whose backbone "
        "to start from (the --classes are learnt anew).",
    )
    add_device(p)
    add_training_flags(p)
    p.add_argument(
        "--classes",
        default=",".join(DEFAULT_CLASSES),
        help="Comma-separated class names, background first.",
    )
    p.add_argument(
        "--sparse",
        type=int,
        default=None,
        metavar="BACKGROUND_VALUE",
        help="Scribble mode: 0 is unknown and this value means background.",
    )
    p.add_argument(
        "--local-contrast",
        type=int,
        default=0,
        metavar="STEPS",
        help="Fine-tune only: first this many steps of supervised local "
        "contrastive training (Hu et al. 2021).",
    )
    p.set_defaults(func=cmd_train)


def load_pair(image_path: str, labels_path: str):
    """The image and its labels, checked to be on one grid."""
    import numpy as np

    from napari_pix2rep.io.images import read_image

    image = read_image(image_path, kind="image")
    labels = read_image(labels_path, kind="labels")
    if labels.shape != image.shape:
        raise CliError(
            f"{labels_path}: the labels {labels.shape} are not on the grid of "
            f"{image_path} {image.shape}."
        )
    if not np.allclose(labels.spacing, image.spacing, rtol=1e-3) or not np.allclose(
        labels.affine, image.affine, atol=1e-3
    ):
        raise CliError(
            f"{labels_path}: the labels have another voxel spacing or position than "
            f"{image_path}; they must be on the image grid."
        )
    return image, labels


def background_slices(labels_path: str, labels) -> set[int]:
    """The background-only slices of ``labels_path``'s sidecar, said when there are any."""
    from napari_pix2rep.annotate.annotations import read_background_slices, sidecar_path

    flat = read_background_slices(labels_path, tuple(labels.data.shape))
    if flat:
        print(f"{len(flat)} background-only slices from {sidecar_path(labels_path).name}")
    return flat


@sigterm_interrupts
def cmd_train(args: argparse.Namespace) -> int:
    from napari_pix2rep.annotate.annotations import sidecar_path
    from napari_pix2rep.core.classes import parse_classes
    from napari_pix2rep.io.outputs import check_output_file, check_outputs
    from napari_pix2rep.jobs import train_job
    from napari_pix2rep.model.checkpoint import default_backbone_path

    if len(args.image) != len(args.labels):
        raise CliError("Give one --labels for every --image.")
    check_output_file(args.out, example="segmenter.pt")
    model = str(args.model or default_backbone_path())
    reads = [*args.image, *args.labels, *(sidecar_path(lab) for lab in args.labels), model]
    check_outputs([(args.out, "--out")], reads, overwrite=True)
    classes = parse_classes(args.classes)
    pairs = [load_pair(i, lab) for i, lab in zip(args.image, args.labels)]
    background = [background_slices(path, lab) for path, (_, lab) in zip(args.labels, pairs)]
    config = {
        **training_flags(args),
        "classes": classes,
        "annotation_mode": "sparse" if args.sparse is not None else "full",
        "background_value": args.sparse,
        "local_contrast_steps": args.local_contrast,
    }
    t0 = time.perf_counter()
    last = {"stage": None}

    def report(p: Progress) -> None:
        if p.stage != last["stage"] or p.step == p.total or p.step % 50 == 0:
            loss = f"  loss {p.loss:.4f}" if p.loss is not None else ""
            extra = f"  {p.message}" if p.message else ""
            if p.eta_s is not None and p.step < p.total:
                extra += f"  ETA {format_duration(p.eta_s)}"
            print(f"{p.stage} {p.step}/{p.total}{loss}{extra}", flush=True)
            last["stage"] = p.stage

    stop = StopOnSignal()
    keep_free, note = cores_to_leave(args.device)
    job = train_job(
        model,
        [(img.data, img.spacing, lab.data) for img, lab in pairs],
        config=config,
        device=args.device,
        names=[img.name for img, _ in pairs],
        background=background,
        should_stop=stop,
        keep_free=keep_free,
    )
    result = stop.run(job, report, note)
    if result.cancelled:
        raise Stopped
    seg = result.segmenter
    seg.meta["model_source"] = str(args.model or "shipped")
    seg.save(args.out)
    n = len(seg.meta["annotated_slices"])
    print(
        f"Saved {args.out}: {args.mode} segmenter from {n} annotated slices "
        f"in {time.perf_counter() - t0:.1f} s."
    )
    return 0


# -- predict -----------------------------------------------------------------------------
def add_predict(sub) -> None:
    p = sub.add_parser("predict", help="Segment volumes with a trained segmenter.")
    p.add_argument("--model", required=True, metavar="SEG.pt")
    p.add_argument("images", nargs="+", metavar="IMG")
    p.add_argument("--out-dir", required=True, metavar="DIR")
    add_device(p)
    p.add_argument(
        "--cleanup",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Keep the largest 3D component per class (default: on).",
    )
    p.add_argument(
        "--uncertainty",
        action="store_true",
        help="Also write <name>_uncertainty.nii.gz (1 - max probability).",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="Replace <name>_seg.nii.gz (and <name>_uncertainty.nii.gz) when they exist "
        "(default: refuse, since one may be a mask you drew).",
    )
    p.add_argument(
        "--localise",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Segment the heart region found from the motion of a cine, or between images "
        "given together on one grid (ED and ES of a stack); no labels used (default: on).",
    )
    p.set_defaults(func=cmd_predict)


def _series_key(image: str) -> str | tuple[str, str]:
    """What makes two inputs one image: the resolved path, or for a DICOM file (which
    stands for its series in its folder) the folder and SeriesInstanceUID."""
    from napari_pix2rep.io.dicom_files import file_series_uid, is_dicom_file

    real = os.path.realpath(image)
    if os.path.isfile(real) and is_dicom_file(real):
        return os.path.dirname(real), file_series_uid(real)
    return real


def predict_targets(images: Sequence[str], out_dir, uncertainty: bool) -> dict[str, tuple]:
    """``{image: (seg path, uncertainty path or None)}`` in ``out_dir``, the same image given
    twice taken once (also several files of one DICOM series, e.g. ``dir/*.dcm``);
    :class:`CliError` when two images would write the same file (names compared ignoring
    case). Outputs against inputs and existing files: :func:`outputs.check_outputs`."""
    from pathlib import Path

    from napari_pix2rep.io.images import image_stem

    inputs = {}
    for image in images:
        inputs.setdefault(_series_key(image), image)
    targets, by_name = {}, {}
    for image in inputs.values():
        stem = image_stem(image)
        targets[image] = (
            Path(out_dir) / f"{stem}_seg.nii.gz",
            Path(out_dir) / f"{stem}_uncertainty.nii.gz" if uncertainty else None,
        )
        by_name.setdefault(stem.casefold(), []).append(image)
    clashes = [names for names in by_name.values() if len(names) > 1]
    if clashes:
        what = "; ".join(
            f"{_some(names)} would {'both' if len(names) == 2 else 'all'} be "
            f"written to {targets[names[0]][0]}"
            for names in clashes[:3]
        )
        more = f" ({len(clashes) - 3} other clashes too)" if len(clashes) > 3 else ""
        raise CliError(
            f"Two inputs have the same name: {what}{more}; rename one or predict them into "
            "separate --out-dir folders."
        )
    return targets


def _some(names: Sequence[str], shown: int = 3) -> str:
    """``a and b``, or ``a, b, c and 5 others``."""
    if len(names) <= shown:
        return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 2 else names)
    return f"{', '.join(names[:shown])} and {len(names) - shown} others"


def same_stack(images: Sequence[str]) -> list[list[str]]:
    """``images`` grouped into stacks, in the order given: images with the same shape,
    spacing and affine (:func:`napari_pix2rep.annotate.loop.on_same_grid`) are phases of one
    stack, e.g. a patient's ED and ES. NIfTI geometry comes from the headers alone."""
    from napari_pix2rep.annotate.loop import on_same_grid
    from napari_pix2rep.io.images import image_grid

    stacks: list[tuple[tuple, list[str]]] = []
    for path in images:
        grid = image_grid(path)
        for first, members in stacks:
            if on_same_grid(*first, *grid):
                members.append(path)
                break
        else:
            stacks.append((grid, [path]))
    return [members for _, members in stacks]


def _where(region, others: Sequence) -> str:
    """What the output line says of the heart region, or why there was none."""
    if region is None:
        return (
            ", whole view: no heart region found; give the phases of its stack together "
            "(ED and ES) or the 4D cine for fewer false positives"
        )
    if region.source != "motion":
        return f", heart region from the {region.source}"
    if others:
        return f", heart region from the motion between it and {len(others)} other phase(s)"
    return ", heart region from the cine's motion"


@sigterm_interrupts
def cmd_predict(args: argparse.Namespace) -> int:
    from napari_pix2rep.io.images import read_image
    from napari_pix2rep.io.nifti_write import write_nifti
    from napari_pix2rep.io.outputs import check_output_dir, check_outputs
    from napari_pix2rep.jobs import predict_job
    from napari_pix2rep.model.segmenter import Segmenter

    created = not os.path.lexists(os.path.expanduser(args.out_dir))
    out_dir = check_output_dir(args.out_dir)
    try:
        targets = predict_targets(args.images, out_dir, args.uncertainty)
        outs = [(out, "--out-dir") for pair in targets.values() for out in pair if out]
        check_outputs(outs, [*args.images, args.model], overwrite=args.overwrite)
        seg = Segmenter.from_file(args.model)  # read once, for every image
        stacks = same_stack(list(targets)) if args.localise else [[p] for p in targets]
        stop = StopOnSignal()
        keep_free, note = cores_to_leave(args.device)
        for stack in stacks:  # each image read once; a stack's phases held together
            vols = {p: read_image(p, kind="image") for p in stack}  # DICOM: patient_description
            for path in stack:
                target, unc_target = targets[path]
                t0 = time.perf_counter()
                vol = vols[path]
                others = [vols[p].data for p in stack if p != path]
                job = predict_job(
                    seg,
                    (vol.data, vol.spacing),
                    device=args.device,
                    cleanup=args.cleanup,
                    should_stop=stop,
                    keep_free=keep_free,
                    localise=args.localise,
                    other_frames=others,
                )
                result = stop.run(job, note=note)
                note = None  # said once
                if result.cancelled:
                    raise Stopped
                pred = result.prediction
                write_nifti(target, pred.labels, vol, kind="labels", classes=seg.classes)
                if unc_target is not None:
                    write_nifti(unc_target, pred.uncertainty(), vol, kind="image")
                where = _where(result.region, others) if args.localise else ""
                seconds = time.perf_counter() - t0
                print(f"{path} -> {target} ({seconds:.2f} s{where})", flush=True)
                for w in result.report.images[0].notes:
                    print(f"pix2rep predict: warning: {path}: {w}", file=sys.stderr, flush=True)
    except BaseException:
        if created and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()  # a folder made for outputs that never came is not left behind
        raise
    return 0
