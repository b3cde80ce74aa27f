"""DICOM SEG export: a label volume on a DICOM series' grid as Segmentation objects.

The label volume is on the grid :func:`~napari_pix2rep.io.dicom.read_dicom` gives for the
series (what ``pix2rep convert`` writes): ``(t, z, y, x)`` for a cine, ``(z, y, x)`` for
one phase, ``y`` the DICOM rows. Each segmented cardiac frame becomes one multi-class
SEG (BINARY, written with highdicom) on that frame's source instances: one segment per
class, coded with SNOMED CT (right ventricle 53085002, myocardium of the left ventricle
49848007, left ventricle 87878005 for its cavity), the algorithm (napari-pix2rep, its
version, the model) named, and each SEG frame referring to the source image it was drawn
on (its plane position and orientation are that image's). Slices with no mask are left
out, and so are cardiac frames with none; all the SEGs of one export form one series.

Anonymised series are untidy, so the source headers handed to highdicom (in-memory
copies; the files are never touched) are normalised, and every change is reported in
:attr:`DicomSegResult.notes`: dates that are not dates (``20120000``) are left empty, one
FrameOfReferenceUID (the most common) and one ImageOrientationPatient (the first image's;
:mod:`~napari_pix2rep.io.dicom` already refused larger differences than 1e-3) are used for
every image, and missing type-2 attributes the SEG copies (StudyID, AccessionNumber...)
are added empty.

Every problem raises :class:`DicomSegError` (a ``ValueError``) or an ``OutputError``
with one sentence, and leaves no file behind: each file is written atomically, and the
ones already written are removed when a later one fails. Imports neither torch nor Qt;
highdicom and pydicom are imported lazily.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_pix2rep import __version__
from napari_pix2rep.core.classes import DEFAULT_CLASSES
from napari_pix2rep.io.dicom import DicomVolume, read_dicom
from napari_pix2rep.io.dicom_files import quiet
from napari_pix2rep.io.errors import error_message
from napari_pix2rep.io.nifti import Volume
from napari_pix2rep.io.outputs import atomic_write, check_output_dir, check_outputs

__all__ = ["DicomSegError", "DicomSegResult", "segment_codes", "write_dicom_seg"]

#: The algorithm named in every segment.
ALGORITHM = "napari-pix2rep"
#: A mask whose affine differs from the series' by more than this (mm) is on another grid.
GRID_TOLERANCE_MM = 1e-3
#: SEG series number = source series number + this.
SERIES_NUMBER_OFFSET = 1000
#: SNOMED CT codes (code, meaning) of the cardiac classes, by lower-case class name.
_CARDIAC = {
    "rv": ("53085002", "Right ventricle"),
    "right ventricle": ("53085002", "Right ventricle"),
    "myo": ("49848007", "Myocardium of left ventricle"),
    "myocardium": ("49848007", "Myocardium of left ventricle"),
    "lv myocardium": ("49848007", "Myocardium of left ventricle"),
    "lv": ("87878005", "Left ventricle"),
    "lv cavity": ("87878005", "Left ventricle"),
    "left ventricle": ("87878005", "Left ventricle"),
}
_ANATOMICAL_STRUCTURE = ("91723000", "Anatomical structure")
_TISSUE = ("85756007", "Tissue")
#: Type-2 attributes highdicom copies from the first source image into the SEG.
_COPIED = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
)


class DicomSegError(ValueError):
    """A DICOM SEG cannot be written; the message is one sentence for the user."""


@dataclass
class DicomSegResult:
    """What :func:`write_dicom_seg` wrote: one file per segmented cardiac frame.

    ``paths[k]`` holds cardiac frame ``frames[k]`` (0 for a single phase);
    ``series_uid`` is the SEG series they form; ``notes`` says what was normalised in
    the source headers given to highdicom (one sentence each).
    """

    paths: list[Path]
    frames: list[int]
    series_uid: str
    notes: list[str] = field(default_factory=list)


def segment_codes(name: str) -> tuple[tuple[str, str], tuple[str, str]]:
    """``(category, type)`` SNOMED CT ``(code, meaning)`` pairs of a class name: the
    cardiac classes (RV, MYO, LV and their long names) are anatomical structures, any
    other class is tissue."""
    known = _CARDIAC.get(name.strip().lower())
    return (_ANATOMICAL_STRUCTURE, known) if known else (_TISSUE, _TISSUE)


def _frames_of(mask: Volume, source: DicomVolume, frame: int | None) -> list[int]:
    """The cardiac frame of each mask frame; raises when the mask is not on the grid."""
    shape = mask.shape
    uid = source.series.uid if source.series else "?"
    axes = "t, z, y, x" if len(source.shape) == 4 else "z, y, x"
    expected = " x ".join(map(str, source.shape))
    if frame is not None and not (len(shape) == 3 and source.is_4d):
        raise DicomSegError(
            "--frame is only for a 3D mask of one phase of a cine; this mask is "
            f"{len(shape)}D and series {uid} has {source.n_frames} phase(s)."
        )
    if len(shape) == 3 and source.is_4d:
        if frame is None:
            raise DicomSegError(
                f"The mask is 3D but series {uid} is a cine of {source.n_frames} phases; "
                "say which phase it belongs to (--frame)."
            )
        if not 0 <= frame < source.n_frames:
            raise DicomSegError(
                f"Frame {frame} does not exist: series {uid} has phases 0 to "
                f"{source.n_frames - 1}."
            )
        frames, grid = [frame], source.shape[1:]
    else:
        frames, grid = list(range(source.n_frames)), source.shape
    if tuple(shape) != tuple(grid):
        raise DicomSegError(
            f"The mask is {' x '.join(map(str, shape))} but series {uid} gives {expected} "
            f"({axes}), so the mask is not on the grid `pix2rep convert` gives for it."
        )
    gap = float(np.abs(np.asarray(mask.affine, float) - source.affine).max())
    if gap > GRID_TOLERANCE_MM:
        raise DicomSegError(
            f"The mask's voxel-to-patient affine differs from series {uid}'s by up to "
            f"{gap:.3g} mm, so the mask is not on the grid `pix2rep convert` gives for it."
        )
    return frames


def _labels(mask: Volume, n_classes: int, classes: Sequence[str]) -> np.ndarray:
    """The mask as unsigned integer labels; raises for values without a class."""
    data = np.asarray(mask.data)
    if not np.issubdtype(data.dtype, np.integer):
        if not np.array_equal(data, np.round(data)):
            raise DicomSegError("The mask holds non-integer values; it must be a label map.")
    low, high = (int(v) for v in (data.min(initial=0), data.max(initial=0)))
    if low < 0 or high >= n_classes:
        bad = low if low < 0 else high
        raise DicomSegError(
            f"The mask holds label {bad}, which is none of the classes "
            f"({', '.join(f'{i} {n}' for i, n in enumerate(classes))})."
        )
    return data.astype(np.uint8 if n_classes <= 256 else np.uint16)


def _read_sources(paths: Sequence[Path]) -> list[Any]:
    """The headers (no pixel data) of the source images, in slice order."""
    import pydicom

    with quiet():
        return [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]


def _invalid_dates(ds: Any) -> list[tuple[str, str, str]]:
    """Blank the top-level DA/DT/TM values of ``ds`` that are not dates or times; returns
    ``(keyword, old value, VR)`` of each."""
    from pydicom.valuerep import DA, DT, TM

    parse = {"DA": DA, "DT": DT, "TM": TM}
    fixed = []
    for elem in ds:
        if elem.VR not in parse or elem.VM != 1 or elem.value in (None, ""):
            continue
        try:
            parse[elem.VR](elem.value)
        except (ValueError, TypeError, OverflowError):
            fixed.append((elem.keyword, str(elem.value), elem.VR))
            elem.value = ""
    return fixed


def _normalise(frames: dict[int, list[Any]]) -> list[str]:
    """Make the source headers of every exported frame acceptable to highdicom (in place,
    on the in-memory copies); returns one sentence per kind of change."""
    from pydicom.uid import generate_uid

    every = [ds for dss in frames.values() for ds in dss]
    name = os.path.basename(str(getattr(every[0], "filename", "") or "")) or "the first image"
    notes = []
    dates: Counter[tuple[str, str, str]] = Counter()
    missing: Counter[str] = Counter()
    for ds in every:
        for fix in _invalid_dates(ds):
            dates[fix] += 1
        for key in _COPIED:
            if key not in ds:
                setattr(ds, key, "")
                missing[key] += 1
    for (key, value, vr), n in dates.items():
        kind = {"DA": "date", "DT": "date and time", "TM": "time"}[vr]
        notes.append(
            f"{key} '{value}' is not a valid DICOM {kind} ({n} of {len(every)} source "
            "images): left empty in the SEG."
        )
    if missing:
        notes.append(
            f"The source images lack {', '.join(sorted(missing))}: added empty (the SEG "
            "copies them)."
        )
    uids = Counter(str(ds.FrameOfReferenceUID) for ds in every if "FrameOfReferenceUID" in ds)
    if not uids:
        chosen = generate_uid()
        notes.append(
            f"The source images have no FrameOfReferenceUID: the SEG uses a new one, {chosen}."
        )
    else:
        chosen = uids.most_common(1)[0][0]  # the first seen among equals
        if len(uids) > 1 or sum(uids.values()) < len(every):
            notes.append(
                f"The {len(every)} source images have {len(uids)} different "
                f"FrameOfReferenceUIDs although they form one grid: the SEG uses {chosen} "
                f"(found on {uids[chosen]} of them) for all."
            )
    first = np.asarray(every[0].ImageOrientationPatient, float)
    gap = max(
        float(np.abs(np.asarray(ds.ImageOrientationPatient, float) - first).max()) for ds in every
    )
    if gap > 0:
        notes.append(
            f"ImageOrientationPatient differs between the source images by up to {gap:.2g}: "
            f"the SEG uses that of {name} for every slice."
        )
    for ds in every:
        ds.FrameOfReferenceUID = chosen
        ds.ImageOrientationPatient = every[0].ImageOrientationPatient
    return notes


def _segment_descriptions(
    classes: Sequence[str], model: str | None, edited: bool
) -> tuple[list[Any], list[str]]:
    """One highdicom SegmentDescription per class but the background, and a note per
    class without a standard code."""
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.sr.coding import Code

    algorithm = hd.AlgorithmIdentificationSequence(
        name=ALGORITHM,
        family=codes.cid7162.ArtificialIntelligence,
        version=__version__,
        parameters={"model": model} if model else None,
    )
    kind = hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC if edited else "AUTOMATIC"
    out, notes = [], []
    for number, name in enumerate(classes[1:], start=1):
        (cat, cat_meaning), (code, meaning) = segment_codes(name)
        if code == _TISSUE[0]:
            notes.append(f"Class '{name}' has no standard anatomic code: coded as tissue.")
        out.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=name[:64],
                segmented_property_category=Code(cat, "SCT", cat_meaning),
                segmented_property_type=Code(code, "SCT", meaning),
                algorithm_type=kind,
                algorithm_identification=algorithm,
            )
        )
    return out, notes


def _build(
    sources: list[Any],
    labels: np.ndarray,
    descriptions: list[Any],
    *,
    series_uid: str,
    series_number: int,
    description: str,
    frame: int,
    n_frames: int,
    model: str | None,
) -> Any:
    """The highdicom Segmentation of one cardiac frame: ``labels`` ``(z, rows, cols)``,
    ``sources`` its ``z`` source headers."""
    import highdicom as hd
    from pydicom.uid import generate_uid

    which = f"phase {frame} of {n_frames}" if n_frames > 1 else "single phase"
    by = f"{ALGORITHM} {__version__}" + (f", model {model}" if model else "")
    with quiet():  # highdicom's warnings about the source's names and UIDs
        return hd.seg.Segmentation(
            source_images=sources,
            pixel_array=labels,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=series_uid,
            series_number=series_number,
            sop_instance_uid=generate_uid(),
            instance_number=frame + 1,
            manufacturer=ALGORITHM,
            manufacturer_model_name=(model or ALGORITHM)[:64],
            software_versions=__version__,
            device_serial_number="0",
            series_description=description[:64],
            content_label="PIX2REP",
            content_description=f"Cardiac {which}, by {by}"[:64],
            omit_empty_frames=True,
        )


def write_dicom_seg(
    mask: Volume,
    series: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    classes: Sequence[str] = DEFAULT_CLASSES,
    model: str | None = None,
    edited: bool = False,
    frame: int | None = None,
    pick: str | None = None,
    overwrite: bool = False,
) -> DicomSegResult:
    """Write ``mask`` as one DICOM SEG per segmented cardiac frame into ``out_dir``.

    ``mask`` is a label volume on the grid :func:`~napari_pix2rep.io.dicom.read_dicom` gives
    for ``series`` (a folder or file, ``pick`` choosing a series as there): ``(t, z, y,
    x)`` for a cine, ``(z, y, x)`` for one phase, or ``(z, y, x)`` for phase ``frame`` of
    a cine. Label ``i`` is ``classes[i]`` (``classes[0]`` the background). ``model``
    names the model in the algorithm identification; ``edited`` (the user painted or
    corrected) makes the algorithm type SEMIAUTOMATIC instead of AUTOMATIC. Files are
    ``<patient>_<series>_seg[_frameNN].dcm``, checked by the output rule
    (:func:`~napari_pix2rep.io.outputs.check_outputs`: never in the series' folder, an
    existing file only replaced with ``overwrite``). Raises :class:`DicomSegError` (or
    ``DicomError``/``OutputError``), leaving no file.
    """
    classes = list(classes)
    if len(classes) < 2:
        raise DicomSegError("Give at least two classes, background first.")
    out = Path(out_dir).expanduser()
    created = [p for p in (out, *out.parents) if not p.exists()]  # the folder first
    check_output_dir(out)
    try:
        return _write(mask, series, out, classes, model, edited, frame, pick, overwrite)
    finally:
        for folder in created:  # made for this export: removed again if it wrote nothing
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()


def _write(
    mask: Volume,
    series: str | os.PathLike[str],
    out: Path,
    classes: list[str],
    model: str | None,
    edited: bool,
    frame: int | None,
    pick: str | None,
    overwrite: bool,
) -> DicomSegResult:
    from pydicom.uid import generate_uid

    source = read_dicom(series, series=pick)
    cardiac = _frames_of(mask, source, frame)
    labels = _labels(mask, len(classes), classes)
    volumes = labels if labels.ndim == 4 else labels[None]
    todo = [(t, volumes[k]) for k, t in enumerate(cardiac) if volumes[k].any()]
    if not todo:
        raise DicomSegError("The mask is empty: there is no segmented slice to export.")
    headers = {t: _read_sources([im.path for im in source.instances[t]]) for t, _ in todo}
    notes = _normalise(headers)
    descriptions, code_notes = _segment_descriptions(classes, model, edited)
    info = source.series
    number = int(info.number) if info and info.number.isdigit() else 0
    what = (info.description if info else "") or f"series {number}"
    series_uid = generate_uid()
    built = []
    for t, vol in todo:
        try:
            seg = _build(
                headers[t],
                vol,
                descriptions,
                series_uid=series_uid,
                series_number=number + SERIES_NUMBER_OFFSET,
                description=f"SEG {what} ({ALGORITHM})",
                frame=t,
                n_frames=source.n_frames,
                model=model,
            )
        except (ValueError, TypeError, AttributeError) as exc:
            where = f" of phase {t}" if source.is_4d else ""
            raise DicomSegError(
                f"highdicom could not build the SEG{where}: {error_message(exc)}"
            ) from exc
        suffix = f"_frame{t:02d}" if source.is_4d else ""
        built.append((out / f"{source.name}_seg{suffix}.dcm", seg))
    folder = Path(series).expanduser().resolve()
    folder = folder if folder.is_dir() else folder.parent
    if out.resolve() == folder or folder in out.resolve().parents:
        raise DicomSegError(
            f"{out} is the series' own folder (or inside it): the SEG files would become part "
            "of the series the next time it is read; choose another --out-dir."
        )
    check_outputs([(path, "--out-dir") for path, _ in built], [series], overwrite=overwrite)
    existed = {path for path, _ in built if path.exists()}
    written: list[Path] = []
    try:
        for path, seg in built:
            with quiet():  # pydicom's warnings about the source's non-conformant UIDs
                atomic_write(path, lambda fh, s=seg: s.save_as(fh, enforce_file_format=True))
            written.append(path)
    except BaseException:
        for path in written:
            if path not in existed:  # a file this export made; one it replaced stays
                path.unlink(missing_ok=True)
        raise
    if overwrite and labels.ndim == 4:
        notes += _remove_stale(out, source.name, written)
    return DicomSegResult(written, [t for t, _ in todo], series_uid, notes + code_notes)


def _remove_stale(out: Path, name: str, written: list[Path]) -> list[str]:
    """After a whole-cine export with ``overwrite``: remove the earlier export's frame
    files of this series that this one did not write (phases now empty), so the folder
    holds one SEG series, not a mix of two; a note says so."""
    stale = [
        p
        for p in sorted(out.glob(f"{name}_seg_frame[0-9][0-9].dcm"))
        if p not in written and p.is_file()
    ]
    for p in stale:
        p.unlink(missing_ok=True)
    if not stale:
        return []
    names = ", ".join(p.name for p in stale)
    return [f"Removed the earlier export's {names}: that phase is empty in this mask."]
