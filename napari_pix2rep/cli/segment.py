"""``pix2rep segment``: the dock's Segment recipe (:mod:`napari_pix2rep.segment.recipe`) on files.

Each ``--labels`` belongs to the ``--image`` before it; images without labels are
segmented too (e.g. ES from the painted slices of ED, carried by registration, as the dock
does); every image is written as ``DIR/<image name>_seg.nii.gz`` with its header (the
naming and writing of ``pix2rep predict``).
"""

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
from napari_pix2rep.cli.segmentation import Stopped, background_slices, load_pair, predict_targets
from napari_pix2rep.core.progress import Progress, format_duration


class _Image(argparse.Action):
    """``--image IMG``: a new input, without labels so far."""

    def __call__(self, parser, namespace, value, option_string=None) -> None:
        inputs = list(getattr(namespace, "inputs", None) or [])
        inputs.append([value, None])
        namespace.inputs = inputs


class _Labels(argparse.Action):
    """``--labels LAB``: the labels of the ``--image`` just before it."""

    def __call__(self, parser, namespace, value, option_string=None) -> None:
        inputs = getattr(namespace, "inputs", None)
        if not inputs:
            parser.error("--labels must follow the --image it belongs to.")
        if inputs[-1][1] is not None:
            parser.error(f"{inputs[-1][0]} has two --labels; give one per --image.")
        inputs[-1][1] = value


def add_segment(sub) -> None:
    p = sub.add_parser(
        "segment",
        help="Segment images from their painted slices (the dock's Segment recipe).",
        description="Each --labels belongs to the --image before it; images without labels "
        "are segmented too (e.g. ES from ED's painted slices, carried by registration). "
        "Writes DIR/<image name>_seg.nii.gz with each image's header.",
    )
    p.add_argument("--image", action=_Image, required=True, metavar="IMG")
    p.add_argument(
        "--labels",
        action=_Labels,
        metavar="LAB",
        help=f"Painted slices of the --image before it, on its grid. {SIDECAR_HELP}",
    )
    p.add_argument("--out-dir", required=True, metavar="DIR")
    p.add_argument(
        "--model",
        metavar="MODEL.pt",
        help="A Pix2Rep backbone, or a segmenter (default: the shipped default segmenter "
        "when there is one, else the shipped backbone).",
    )
    add_device(p)
    add_training_flags(p)
    for flag, what in (
        ("localise", "Segment the heart region found from the paint or the motion"),
        ("propagate", "Carry painted slices to the other phases of their stack and fuse"),
    ):
        p.add_argument(
            f"--{flag}",
            action=argparse.BooleanOptionalAction,
            default=True,
            help=f"{what} (default: on).",
        )
    _add_settings_flags(p)
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="Replace <name>_seg.nii.gz when it exists (default: refuse).",
    )
    p.set_defaults(func=cmd_segment, inputs=None)


def _registration(text: str):
    from napari_pix2rep.segment.settings import Registration

    try:
        return Registration.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _add_settings_flags(p: argparse.ArgumentParser) -> None:
    """The recipe's other settings (:class:`~napari_pix2rep.segment.settings.SegmentSettings`),
    each defaulting to the shipped value."""
    from napari_pix2rep.segment.settings import FUSE_WEIGHT

    for flag, what in (
        ("fuse", "Fuse a phase's prediction with its painted sibling phases' carried onto it"),
        ("cleanup", "Keep only the heart's connected component and each class's largest part"),
    ):
        p.add_argument(
            f"--{flag}", action=argparse.BooleanOptionalAction, default=True, help=f"{what}."
        )
    p.add_argument(
        "--flip-average",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Average each slice's prediction with its left-right mirror's (twice the "
        "network time; default: as the model file asks, which the default cardiac model does).",
    )
    p.add_argument(
        "--fuse-weight",
        type=float,
        default=FUSE_WEIGHT,
        help=f"Weight of the other phase in a fused prediction (default {FUSE_WEIGHT}).",
    )
    p.add_argument(
        "--registration",
        type=_registration,
        default=None,
        metavar="GRID,STEPS,BENDING",
        help="Registration of carried slices: control grid (px), steps, bending "
        "(default 6,80,0.05).",
    )
    p.add_argument(
        "--adapt-steps",
        type=int,
        default=None,
        help="Steps that adapt a default (zero-click) model to the painted slices "
        "(default 0: the model's masks, with the painted slices kept as painted).",
    )


def _settings(args: argparse.Namespace):
    from napari_pix2rep.segment.settings import SegmentSettings

    training = training_flags(args)
    if args.adapt_steps is not None:
        training["adapt_steps"] = args.adapt_steps
    return SegmentSettings.from_flags(args, training)


def _model(path: str | None, painted: bool):
    """The model file chosen (or the shipped default) and the loaded model; a backbone
    with nothing painted is refused with one sentence before any image is read."""
    from napari_pix2rep.jobs import load_model
    from napari_pix2rep.model.checkpoint import default_backbone_path, default_segmenter_path
    from napari_pix2rep.segment.recipe import NO_PAINT

    path = str(path or default_segmenter_path() or default_backbone_path())
    model = load_model(path)
    if not painted and isinstance(model, tuple):
        raise CliError(NO_PAINT)
    return path, model


def _read(inputs: Sequence[list]):
    """Per input: its :class:`~napari_pix2rep.segment.recipe.Scan`, Annotation or None, Volume."""
    from napari_pix2rep.io.images import image_stem, read_image
    from napari_pix2rep.segment.recipe import Annotation, Scan

    scans, annotations, volumes = [], [], []
    for image, labels in inputs:
        if labels is None:
            vol, ann = read_image(image, kind="image"), None
        else:
            vol, lab = load_pair(image, labels)
            ann = Annotation(lab.data, frozenset(background_slices(labels, lab)))
        scans.append(Scan(vol.data, vol.spacing, image_stem(image), vol.affine))
        annotations.append(ann)
        volumes.append(vol)
    return scans, annotations, volumes


def _reporter():
    last = {"stage": None}

    def report(p: Progress) -> None:
        if p.stage != last["stage"] or p.step == p.total or p.step % 50 == 0:
            loss = f"  loss {p.loss:.4f}" if p.loss is not None else ""
            extra = f"  {p.message}" if p.message else ""
            if p.eta_s is not None and p.step < p.total:
                extra += f"  ETA {format_duration(p.eta_s)}"
            print(f"{p.stage} {p.step}/{p.total}{loss}{extra}", flush=True)
            last["stage"] = p.stage

    return report


@sigterm_interrupts
def cmd_segment(args: argparse.Namespace) -> int:
    from napari_pix2rep.annotate.annotations import sidecar_path
    from napari_pix2rep.io.nifti_write import write_nifti
    from napari_pix2rep.io.outputs import check_output_dir, check_outputs
    from napari_pix2rep.jobs import recipe_job

    images = [image for image, _ in args.inputs]
    labels = [lab for _, lab in args.inputs if lab is not None]
    created = not os.path.lexists(os.path.expanduser(args.out_dir))
    out_dir = check_output_dir(args.out_dir)
    try:
        targets = predict_targets(images, out_dir, False)
        if len(targets) != len(images):
            raise CliError("An image is given twice: give each --image once, with its labels.")
        path, model = _model(args.model, bool(labels))
        reads = [*images, *labels, *(sidecar_path(lab) for lab in labels), path]
        outs = [(seg, "--out-dir") for seg, _ in targets.values()]
        check_outputs(outs, reads, overwrite=args.overwrite)
        scans, annotations, volumes = _read(args.inputs)
        stop = StopOnSignal()
        keep_free, note = cores_to_leave(args.device)
        t0 = time.perf_counter()
        job = recipe_job(
            model,
            scans,
            annotations,
            settings=_settings(args),
            device=args.device,
            should_stop=stop,
            keep_free=keep_free,
        )
        outcome = stop.run(job, _reporter(), note)
        if outcome.cancelled:
            raise Stopped
        for k, (image, vol) in enumerate(zip(images, volumes)):
            classes = outcome.segmenters[k].classes
            labels = outcome.masks[k].labels
            seg = write_nifti(targets[image][0], labels, vol, kind="labels", classes=classes)
            print(f"{image} -> {seg} ({outcome.report.images[k].line()})", flush=True)
            for w in outcome.report.images[k].notes:
                print(f"pix2rep segment: warning: {image}: {w}", file=sys.stderr, flush=True)
        print(f"Segmented {len(images)} image(s) in {time.perf_counter() - t0:.1f} s.")
    except BaseException:
        if created and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()  # a folder made for outputs that never came is not left behind
        raise
    return 0
