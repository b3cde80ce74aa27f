"""ACDC-style datasets: ``root/<case>/<case>_frameNN[_gt].nii.gz`` with an ``Info.cfg``.

Used by the benchmarks and the real-data tests (ACDC training patients in
``../shared/data/acdc/training``) and by the synthetic stand-in that
:func:`napari_pix2rep.evaluation.phantom.write_phantom_dataset` writes. Nothing is copied.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from napari_pix2rep.io.nifti import Volume, read_nifti

GROUPS = ("DCM", "HCM", "MINF", "NOR", "RV")


@dataclass(frozen=True)
class Case:
    """One patient: ED and ES image and ground-truth files, pathology group."""

    id: str
    number: int
    group: str
    ed: Path
    es: Path
    ed_gt: Path
    es_gt: Path

    def load(self) -> dict[str, Volume]:
        """The four volumes, read with the plugin's reader (geometry kept)."""
        return {
            "ed": read_nifti(self.ed),
            "es": read_nifti(self.es),
            "ed_gt": read_nifti(self.ed_gt),
            "es_gt": read_nifti(self.es_gt),
        }


def _info(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            out[key.strip()] = value.strip()
    return out


def list_cases(root: str | os.PathLike) -> list[Case]:
    """Every case folder under ``root`` that has an Info.cfg and its ED/ES files."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder of ACDC-style cases.")
    cases = []
    for folder in sorted(p for p in root.iterdir() if (p / "Info.cfg").is_file()):
        info = _info(folder / "Info.cfg")
        name = folder.name
        files = {}
        for phase in ("ED", "ES"):
            stem = folder / f"{name}_frame{int(info[phase]):02d}"
            files[phase] = (Path(f"{stem}.nii.gz"), Path(f"{stem}_gt.nii.gz"))
        if not all(p.is_file() for pair in files.values() for p in pair):
            continue
        digits = re.findall(r"\d+", name)
        cases.append(
            Case(
                id=name,
                number=int(digits[-1]) if digits else len(cases) + 1,
                group=info.get("Group", "?"),
                ed=files["ED"][0],
                es=files["ES"][0],
                ed_gt=files["ED"][1],
                es_gt=files["ES"][1],
            )
        )
    if not cases:
        raise FileNotFoundError(f"No ACDC-style cases (folders with Info.cfg) under {root}.")
    return cases


def split_validation(cases: list[Case]) -> tuple[list[Case], list[Case]]:
    """The benchmarks' split (docs/benchmarks.md): validation = case numbers divisible by
    5 (005, 010, ...); labels from the rest."""
    val = [c for c in cases if c.number % 5 == 0]
    pool = [c for c in cases if c.number % 5 != 0]
    return pool, val
