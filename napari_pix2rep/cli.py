"""The ``pix2rep`` console script (the contract of DESIGN.md).

Every command is a thin layer over the library; heavy modules are imported inside the
command so that ``pix2rep --help`` is instant. Errors print one sentence to stderr and
exit non-zero; files are only ever replaced atomically.
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """An error whose message is shown to the user as is."""


def _fmt_time(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the command stops where it is, its temporary files are
    removed, files already saved stay intact, and it exits 130 with a sentence."""


def _sigterm_interrupts(cmd: Callable[[argparse.Namespace], int]):
    """Run a command with SIGTERM raising :class:`Terminated` (the default would kill the
    process on the spot); the previous handler is restored afterwards."""

    @functools.wraps(cmd)
    def run(args: argparse.Namespace) -> int:
        if threading.current_thread() is not threading.main_thread():
            return cmd(args)

        def handle(signum, frame) -> None:
            raise Terminated

        previous = signal.signal(signal.SIGTERM, handle)
        try:
            return cmd(args)
        finally:
            signal.signal(signal.SIGTERM, previous)

    return run


class _StopFlag:
    """Ctrl-C (or SIGTERM) asks the loop to stop at the next step boundary; a second
    Ctrl-C aborts at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict = {}

    def __enter__(self) -> _StopFlag:
        self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nStopping after this step (Ctrl-C again to abort at once)...", file=sys.stderr)

    def __call__(self) -> bool:
        return self.requested


# -- pretrain ----------------------------------------------------------------------------
def _add_pretrain(sub) -> None:
    p = sub.add_parser("pretrain", help="Pix2Rep self-supervised pretraining of a backbone.")
    p.add_argument(
        "data", nargs="+", metavar="DATA", help="NIfTI files, DICOM series or folders (recursive)."
    )
    p.add_argument("--out", required=True, metavar="BACKBONE.pt", help="Checkpoint to write.")
    # None = not given: a new run takes the default, a resumed one its checkpoint's value
    p.add_argument(
        "--preset",
        choices=("small", "paper", "tiny"),
        default=None,
        help="small (CPU-friendly, default), paper (the authors', GPU), tiny (tests).",
    )
    p.add_argument(
        "--loss",
        choices=("infonce", "barlow", "simclr"),
        default=None,
        help="Pix2Rep InfoNCE (default) or Barlow Twins; simclr = image-level baseline.",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="Total number of steps (1000; on --resume the run's own).",
    )
    p.add_argument(
        "--batch-size", type=int, default=None, help="Slices per step (per process, 8)."
    )
    p.add_argument("--init", metavar="BACKBONE.pt", help="Start from these weights.")
    p.add_argument(
        "--resume",
        metavar="BACKBONE.pt",
        help="Continue this run (to --steps); its preset, loss, batch size, lr and seed "
        "cannot change.",
    )
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="Also skip files matching this glob (repeatable); label files (*_gt, *_seg, "
        "*_label(s), *_mask) are always skipped.",
    )
    p.add_argument("--seed", type=int, default=None, help="Random seed (0).")
    p.add_argument("--lr", type=float, default=None, help="Peak learning rate (4.7e-4).")
    p.add_argument(
        "--checkpoint-every", type=int, default=None, metavar="N", help="Save every N steps (100)."
    )
    p.add_argument(
        "--checkpoint-minutes",
        type=float,
        default=None,
        metavar="M",
        help="Also save when M minutes have passed since the last save (2; 0 = never).",
    )
    p.add_argument(
        "--snapshot-every",
        type=int,
        default=None,
        metavar="N",
        help="Also keep a copy of the checkpoint every N steps (OUT_stepN.pt).",
    )
    p.add_argument("--log-every", type=int, default=10, metavar="N")
    p.set_defaults(func=_cmd_pretrain)


def _pretrain_config(args):
    """The run's :class:`PretrainConfig`: the flags given over the defaults, or, with
    ``--resume``, the checkpoint's run with only its cadence and ``--steps`` changed."""
    from .checkpoint import ModelFileError, load_model_file
    from .pretrain import RESUMABLE, TRAJECTORY, PretrainConfig, resume_conflicts

    given = {name: getattr(args, name) for name in TRAJECTORY + RESUMABLE}
    if not args.resume:
        return PretrainConfig(**{k: v for k, v in given.items() if v is not None})
    state = load_model_file(args.resume, expect="backbone")
    if "resume" not in state:
        raise ModelFileError(f"{args.resume} holds no training state to resume.")
    try:
        saved = PretrainConfig(**dict(state["resume"]["config"]))
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFileError(f"{args.resume} holds unreadable run settings ({e}).") from None
    conflicts = resume_conflicts(saved, given)
    if conflicts:
        what = ", ".join(
            f"--{name.replace('_', '-')} {new:g} (the run's {old:g})"
            if isinstance(new, float)
            else f"--{name.replace('_', '-')} {new} (the run's {old})"
            for name, (new, old) in conflicts.items()
        )
        raise CliError(
            f"--resume {args.resume} continues a run with other settings: {what}; drop "
            "them (on resume only --steps, --checkpoint-every, --checkpoint-minutes and "
            "--snapshot-every can change)."
        )
    for name in RESUMABLE:
        if given[name] is not None:
            setattr(saved, name, given[name])
    PretrainConfig(**saved.to_dict())  # the changed cadence is checked like a new run's
    return saved


@_sigterm_interrupts
def _cmd_pretrain(args) -> int:
    from .datafiles import find_training_images
    from .outputs import OutputLock, check_output_file

    if args.init and args.resume:
        raise CliError("Give either --init or --resume, not both.")
    check_output_file(args.out)
    config = _pretrain_config(args)
    found = find_training_images(args.data, args.exclude)
    # under torchrun rank 0 alone writes, so it alone holds the lock
    lock = OutputLock(args.out) if os.environ.get("RANK", "0") == "0" else nullcontext()
    with lock:
        if getattr(lock, "note", ""):
            print(lock.note, file=sys.stderr)
        return _run_pretraining(args, config, found)


def _run_pretraining(args, config, found) -> int:
    """Load the slices of ``found.images``, train, log; the output is checked and locked."""
    from .pretrain import Pretrainer
    from .slices import SliceBank

    t0 = time.perf_counter()
    bank = SliceBank.from_files(found.images, config.preprocess)
    trainer = Pretrainer(
        bank, config, out=args.out, device=args.device, init=args.init, resume=args.resume
    )
    lead = trainer.rank == 0
    cfg = trainer.config
    if lead:
        print(
            f"{found.summary()}, {len(bank)} slices loaded in {time.perf_counter() - t0:.1f} s; "
            f"{cfg.loss} on {trainer.device} x{trainer.world}, effective batch "
            f"{trainer.effective_batch} ({cfg.batch_size} x {trainer.world}), lr {cfg.lr:g}; "
            f"steps {trainer.step} -> {cfg.steps}",
            flush=True,
        )
    window: list[float] = []
    with _StopFlag() as stop:
        for info in trainer.steps(should_stop=stop):
            window.append(info.loss)
            if lead and (info.step % args.log_every == 0 or info.step == info.steps):
                print(
                    f"step {info.step}/{info.steps}  loss {sum(window) / len(window):.4f}  "
                    f"lr {info.lr:.2e}  {info.slices_per_s:.1f} slices/s  "
                    f"ETA {_fmt_time(info.eta_s)}",
                    flush=True,
                )
                window.clear()
        trainer.close()
        if stop.requested:
            if lead:
                print(
                    f"Stopped at step {trainer.step}; checkpoint saved to {args.out}. "
                    f"Continue with --resume {args.out}.",
                    file=sys.stderr,
                )
            return EXIT_INTERRUPTED
    if lead:
        print(f"Saved {args.out} after {trainer.step} steps.")
    return 0


# -- train -------------------------------------------------------------------------------
def _add_train(sub) -> None:
    p = sub.add_parser("train", help="Train a segmenter from annotated slices.")
    p.add_argument("--image", action="append", required=True, metavar="IMG")
    p.add_argument(
        "--labels",
        action="append",
        required=True,
        metavar="LAB",
        help="Labels on the image's grid; one --labels per --image. Its LAB.slices.json "
        "sidecar, when there is one, lists background-only slices (docs/annotations.md).",
    )
    p.add_argument("--out", required=True, metavar="SEG.pt")
    p.add_argument(
        "--model",
        metavar="BACKBONE.pt",
        help="Pretrained backbone (default: the shipped one) or a segmenter to continue from.",
    )
    p.add_argument("--mode", choices=("linear", "finetune"), default="linear")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--steps", type=int, default=None, help="Optimisation steps (probe: 300, fine-tune: 300)."
    )
    p.add_argument(
        "--classes",
        default="background,RV,MYO,LV",
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
    p.set_defaults(func=_cmd_train)


def _load_pair(image_path: str, labels_path: str):
    import numpy as np

    from .images import read_image

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


def _background_slices(labels_path: str, labels) -> set[int]:
    """The background-only slices of ``labels_path``'s sidecar, said when there are any."""
    from .annotations import read_background_slices, sidecar_path

    flat = read_background_slices(labels_path, tuple(labels.data.shape))
    if flat:
        print(f"{len(flat)} background-only slices from {sidecar_path(labels_path).name}")
    return flat


def _backbone_source(path: str | None):
    """(UNet or Segmenter, PreprocessConfig) from --model (default: the shipped backbone)."""
    from .checkpoint import default_backbone_path, load_model_file
    from .segment import Segmenter, load_backbone

    path = path or default_backbone_path()
    if load_model_file(path).get("format", "").endswith("segmenter"):
        seg = Segmenter.from_file(path)
        return seg, seg.preprocess
    backbone, preprocess, _ = load_backbone(path)
    return backbone, preprocess


@_sigterm_interrupts
def _cmd_train(args) -> int:
    from .outputs import check_output_file
    from .segment import Segmenter, TrainConfig, train_segmenter

    if len(args.image) != len(args.labels):
        raise CliError("Give one --labels for every --image.")
    check_output_file(args.out)
    pairs = [_load_pair(i, lab) for i, lab in zip(args.image, args.labels)]
    background = [_background_slices(path, lab) for path, (_, lab) in zip(args.labels, pairs)]
    classes = tuple(c.strip() for c in args.classes.split(",") if c.strip())
    cfg = TrainConfig(
        mode=args.mode,
        classes=classes,
        annotation_mode="sparse" if args.sparse is not None else "full",
        background_value=args.sparse,
        seed=args.seed,
        local_contrast_steps=args.local_contrast,
        **({"probe_steps": args.steps, "ft_steps": args.steps} if args.steps else {}),
    )
    source, preprocess = _backbone_source(args.model)
    if isinstance(source, Segmenter) and source.classes != classes:
        cfg.classes = source.classes
    t0 = time.perf_counter()
    last = {"stage": None}

    def report(p) -> None:
        if p.stage != last["stage"] or p.step == p.total or p.step % 50 == 0:
            loss = f"  loss {p.loss:.4f}" if p.loss is not None else ""
            extra = f"  {p.message}" if p.message else ""
            print(f"{p.stage} {p.step}/{p.total}{loss}{extra}", flush=True)
            last["stage"] = p.stage

    seg = train_segmenter(
        source,
        preprocess,
        [(img.data, img.spacing) for img, _ in pairs],
        [lab.data for _, lab in pairs],
        cfg,
        device=args.device,
        names=[img.name for img, _ in pairs],
        progress=report,
        background_slices=background,
    )
    seg.meta["model_source"] = str(args.model or "shipped")
    seg.save(args.out)
    n = len(seg.meta["annotated_slices"])
    print(
        f"Saved {args.out}: {args.mode} segmenter from {n} annotated slices "
        f"in {time.perf_counter() - t0:.1f} s."
    )
    return 0


# -- predict -----------------------------------------------------------------------------
def _add_predict(sub) -> None:
    p = sub.add_parser("predict", help="Segment volumes with a trained segmenter.")
    p.add_argument("--model", required=True, metavar="SEG.pt")
    p.add_argument("images", nargs="+", metavar="IMG")
    p.add_argument("--out-dir", required=True, metavar="DIR")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    p.add_argument(
        "--cleanup",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Keep the largest 3D component per class (default: the model's).",
    )
    p.add_argument(
        "--uncertainty",
        action="store_true",
        help="Also write <name>_uncertainty.nii.gz (1 - max probability).",
    )
    p.set_defaults(func=_cmd_predict)


def _predict_targets(images: Sequence[str], out_dir, uncertainty: bool) -> dict[str, tuple]:
    """``{image: (seg path, uncertainty path or None)}`` in ``out_dir``, the same image given
    twice taken once; :class:`CliError` when two images would write the same file
    (names compared ignoring case) or an output would replace an input."""
    from pathlib import Path

    from .images import image_stem

    inputs = {}
    for image in images:
        inputs.setdefault(os.path.realpath(image), image)
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
            f"{' and '.join(names)} would {'both' if len(names) == 2 else 'all'} be "
            f"written to {targets[names[0]][0]}"
            for names in clashes
        )
        raise CliError(
            f"Two inputs have the same name: {what}; rename one or predict them into "
            "separate --out-dir folders."
        )
    for image, outs in targets.items():
        for out in outs:
            if out is not None and os.path.realpath(out) in inputs:
                raise CliError(
                    f"{out} is an input and also the output for {image}; choose another --out-dir."
                )
    return targets


@_sigterm_interrupts
def _cmd_predict(args) -> int:
    from .images import read_image
    from .nifti_write import write_nifti
    from .outputs import check_output_dir
    from .predict import DEFAULT_CLEANUP, predict_volume
    from .segment import Segmenter

    created = not os.path.lexists(os.path.expanduser(args.out_dir))
    out_dir = check_output_dir(args.out_dir)
    try:
        targets = _predict_targets(args.images, out_dir, args.uncertainty)
        seg = Segmenter.from_file(args.model)
        cleanup = DEFAULT_CLEANUP if args.cleanup is None else args.cleanup
        for path, (target, unc_target) in targets.items():
            t0 = time.perf_counter()
            vol = read_image(path, kind="image")  # a DICOM series: patient_description
            pred = predict_volume(seg, vol.data, vol.spacing, device=args.device, cleanup=cleanup)
            write_nifti(target, pred.labels, vol, kind="labels")
            if unc_target is not None:
                write_nifti(unc_target, pred.uncertainty(), vol, kind="image")
            print(f"{path} -> {target} ({time.perf_counter() - t0:.2f} s)", flush=True)
    except BaseException:
        if created and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()  # a folder made for outputs that never came is not left behind
        raise
    return 0


# -- evaluate ----------------------------------------------------------------------------
def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="3D DICE per class of predictions against truth.")
    p.add_argument("--pred", action="append", required=True, metavar="P.nii.gz")
    p.add_argument("--gt", action="append", required=True, metavar="G.nii.gz")
    p.add_argument(
        "--classes", default="RV,MYO,LV", help="Names of labels 1, 2, ... (default RV,MYO,LV)."
    )
    p.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
    p.set_defaults(func=_cmd_evaluate)


@_sigterm_interrupts
def _cmd_evaluate(args) -> int:
    import json

    import numpy as np

    from .metrics import dice_per_class
    from .nifti import read_nifti

    if len(args.pred) != len(args.gt):
        raise CliError("Give one --gt for every --pred.")
    names = [c.strip() for c in args.classes.split(",") if c.strip()]
    rows = []
    for p, g in zip(args.pred, args.gt):
        pred, gt = read_nifti(p, kind="labels"), read_nifti(g, kind="labels")
        if pred.shape != gt.shape:
            raise CliError(f"{p} {pred.shape} and {g} {gt.shape} are not on the same grid.")
        d = dice_per_class(pred.data, gt.data, range(1, len(names) + 1))
        rows.append({"pred": p, "gt": g, **{n: d[i + 1] for i, n in enumerate(names)}})
    mean = {n: float(np.nanmean([r[n] for r in rows])) for n in names}
    mean["mean"] = float(np.nanmean(list(mean.values())))
    if args.json:
        print(json.dumps({"cases": rows, "mean": mean}, indent=2))
        return 0
    print("\t".join(["prediction", *names, "mean"]))
    for r in rows:
        vals = [r[n] for n in names]
        print("\t".join([r["pred"], *(f"{v:.4f}" for v in vals), f"{np.nanmean(vals):.4f}"]))
    print("\t".join(["MEAN", *(f"{mean[n]:.4f}" for n in names), f"{mean['mean']:.4f}"]))
    return 0


# -- measure -----------------------------------------------------------------------------
def _add_measure(sub) -> None:
    p = sub.add_parser("measure", help="LV/RV volumes, ejection fractions, myocardial mass.")
    p.add_argument(
        "segs",
        nargs="+",
        metavar="SEG.nii.gz",
        help="One 4D segmentation, or the ED and ES 3D segmentations.",
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--ed", type=int, metavar="N", help="4D: end-diastolic frame (0-based).")
    p.add_argument("--es", type=int, metavar="N", help="4D: end-systolic frame (0-based).")
    p.set_defaults(func=_cmd_measure)


@_sigterm_interrupts
def _cmd_measure(args) -> int:
    import json

    from .images import read_image
    from .metrics import cardiac_measures, cine_measures, structure_volumes, volume_curve

    vols = [read_image(s, kind="labels") for s in args.segs]
    out: dict = {}
    given = (args.ed, args.es) != (None, None)
    if given and not (len(vols) == 1 and vols[0].is_4d):
        raise CliError("--ed and --es pick frames of one 4D segmentation.")
    if len(vols) == 1 and vols[0].is_4d:
        v = vols[0]
        spatial = v.spacing[1:]
        out["measures"] = cine_measures(v.data, spatial, ed=args.ed, es=args.es).to_dict()
        out["curve"] = volume_curve(v.data, spatial)
    elif len(vols) == 2 and not any(v.is_4d for v in vols):
        a, b = vols
        if a.shape != b.shape:
            raise CliError("The ED and ES segmentations are not on the same grid.")
        lv = [structure_volumes(v.data, v.spacing)["LV_ml"] for v in vols]
        ed, es = (a, b) if lv[0] >= lv[1] else (b, a)
        out["measures"] = cardiac_measures(ed.data, es.data, ed.spacing).to_dict()
        out["ed"], out["es"] = ed.path, es.path
    elif len(vols) == 1:
        out["volumes"] = structure_volumes(vols[0].data, vols[0].spacing)
    else:
        raise CliError("Give one 4D segmentation, or two 3D ones (ED and ES).")
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    if "measures" in out:
        m = out["measures"]
        if "ed" in out:
            print(f"ED: {out['ed']}\nES: {out['es']}")
        elif m.get("ed_frame") is not None:
            how = "given" if given else "largest and smallest LV volume"
            print(f"ED frame {m['ed_frame']}, ES frame {m['es_frame']} ({how})")
        print(f"LV  EDV {m['LV_EDV']:.1f} mL  ESV {m['LV_ESV']:.1f} mL  EF {m['LV_EF']:.1f} %")
        print(f"RV  EDV {m['RV_EDV']:.1f} mL  ESV {m['RV_ESV']:.1f} mL  EF {m['RV_EF']:.1f} %")
        print(f"Myocardial mass {m['MYO_mass']:.1f} g")
        for t, c in enumerate(out.get("curve", [])):
            print(f"frame {t}: LV {c['LV_ml']:.1f} mL, RV {c['RV_ml']:.1f} mL")
    else:
        v = out["volumes"]
        print(f"LV {v['LV_ml']:.1f} mL, RV {v['RV_ml']:.1f} mL, MYO {v['MYO_ml']:.1f} mL")
    return 0


# -- convert -----------------------------------------------------------------------------
def _add_convert(sub) -> None:
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
    p.set_defaults(func=_cmd_convert)


@_sigterm_interrupts
def _cmd_convert(args) -> int:
    from .dicom import read_dicom
    from .nifti_write import write_nifti
    from .outputs import check_output_file

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


# -- gui ---------------------------------------------------------------------------------
def _add_gui(sub) -> None:
    p = sub.add_parser("gui", help="Open napari with the Pix2Rep dock (and the images).")
    p.add_argument("images", nargs="*", metavar="IMG")
    p.set_defaults(func=_cmd_gui)


def _cmd_gui(args) -> int:
    from ._qt.launcher import launch

    launch(args.images)
    return 0


# -- entry point -------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pix2rep",
        description="Few-shot cardiac MRI segmentation from Pix2Rep representations.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_pretrain, _add_train, _add_predict, _add_evaluate, _add_measure, _add_gui):
        add(sub)
    _add_convert(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CliError, ValueError, FileNotFoundError, FloatingPointError, OSError) as e:
        print(f"pix2rep {args.command}: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except (RuntimeError, MemoryError) as e:  # out of memory, or torch refusing an input
        from .errors import error_message, out_of_memory

        oom = out_of_memory(e)
        text = (
            f"the computer {oom}: try a smaller --batch-size, --device cpu, or fewer or "
            "smaller images."
            if oom
            else error_message(e)
        )
        print(f"pix2rep {args.command}: error: {text}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(
            f"pix2rep {args.command}: interrupted; files already saved are intact.",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
