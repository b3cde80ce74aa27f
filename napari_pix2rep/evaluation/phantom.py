"""Seeded synthetic short-axis cardiac cine MRI phantom with RV / MYO / LV ground truth.

The phantom is a stack of short-axis slices from base (slice 0) to apex: a bright LV
blood pool inside a darker myocardial ring, a bright RV crescent wrapping the LV on one
side and vanishing toward the apex, papillary muscles, epicardial and subcutaneous fat,
dark lungs, a bright descending aorta, a spine and a body outline. In a cine (4D) phantom
the cavities contract from end-diastole (frame 0) to end-systole (about a third of the
cycle) and relax again, the myocardium thickening as its area is kept. Contrast follows
a bSSFP cine: blood about 1.0, myocardium about 0.3, air about 0, with a smooth
multiplicative coil bias field and Rician noise. Spacing is anisotropic (10 mm slices).

Labels follow ACDC: 0 background, 1 RV cavity, 2 LV myocardium, 3 LV cavity (papillary
muscles included). Only numpy and scipy are used; the same seed gives the same phantom.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import nibabel as nib
import numpy as np
from scipy import ndimage

from napari_pix2rep.core.classes import BACKGROUND, DEFAULT_CLASSES, LV, MYO, RV
from napari_pix2rep.io.nifti import Volume
from napari_pix2rep.io.nifti_write import write_nifti

__all__ = [
    "BACKGROUND",
    "CLASS_NAMES",
    "LV",
    "MYO",
    "RV",
    "Phantom",
    "make_phantom",
    "write_phantom_dataset",
]

CLASS_NAMES = DEFAULT_CLASSES

#: Length of the simulated cardiac cycle in seconds (frame time = cycle / n_frames).
CYCLE_S = 0.8

# bSSFP-like intensities (blood = 1)
_AIR, _TISSUE, _FAT, _LUNG, _BLOOD, _MYO, _BONE = 0.0, 0.32, 0.85, 0.05, 1.0, 0.3, 0.22


@dataclass
class Phantom:
    """A synthetic volume in display order with its truth and geometry.

    ``image`` is float32 and ``labels`` uint8, both ``(z, y, x)`` or ``(t, z, y, x)``;
    ``spacing`` follows the axes (mm; for 4D the frame time in seconds first); ``affine``
    maps NIfTI voxel indices (x, y, z) to scanner mm. ``es_frame`` is the end-systolic
    frame of a cine (None for 3D); end-diastole is frame 0.
    """

    image: np.ndarray
    labels: np.ndarray
    spacing: tuple[float, ...]
    affine: np.ndarray
    es_frame: int | None = None
    ed_frame: int = 0

    @property
    def is_4d(self) -> bool:
        """True for a cine phantom ``(t, z, y, x)``."""
        return self.image.ndim == 4

    @property
    def header(self) -> nib.Nifti1Header:
        """A NIfTI-1 header for the image: float32, sform/qform code 1, units mm / s."""
        zooms = tuple(reversed(self.spacing))
        header = nib.Nifti1Header()
        header.set_data_shape(tuple(reversed(self.image.shape)))
        header.set_data_dtype(np.float32)
        header.set_qform(self.affine, code=1)
        header.set_sform(self.affine, code=1)
        header.set_zooms(zooms)
        header.set_xyzt_units("mm", "sec")
        header.set_dim_info(freq=0, phase=1, slice=2)
        header["descrip"] = b"napari-pix2rep synthetic cardiac phantom"
        return header

    def to_volume(self, kind: Literal["image", "labels"] = "image") -> Volume:
        """The image (float32) or the labels (uint8) as a :class:`Volume` with the header."""
        if kind not in ("image", "labels"):
            raise ValueError(f"kind must be 'image' or 'labels', not {kind!r}.")
        header = self.header
        data = self.image if kind == "image" else self.labels
        header.set_data_dtype(data.dtype)
        return Volume(data, tuple(self.spacing), header, np.array(self.affine), None)

    def frame(self, index: int) -> Phantom:
        """One frame of a cine phantom as a 3D phantom."""
        if not self.is_4d:
            raise ValueError("frame() needs a 4D (cine) phantom.")
        return Phantom(self.image[index], self.labels[index], tuple(self.spacing[1:]), self.affine)


def contraction(frame: int, n_frames: int, es_frame: int) -> float:
    """Systolic contraction in [0, 1]: 0 at end-diastole (frame 0), 1 at end-systole."""
    if n_frames <= 1 or es_frame <= 0:
        return 0.0
    t = frame % n_frames
    if t <= es_frame:
        return 0.5 * (1.0 - np.cos(np.pi * t / es_frame))
    return 0.5 * (1.0 + np.cos(np.pi * (t - es_frame) / (n_frames - es_frame)))


def _oblique_affine(
    rng: np.random.Generator, shape_zyx: tuple[int, int, int], spacing_zyx: tuple[float, ...]
) -> np.ndarray:
    """A short-axis-like oblique affine (rotation x spacing) centred near the origin."""
    ax, ay, az = np.deg2rad(rng.uniform([-35, 25, -20], [-25, 45, 0]))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    zooms = np.array(spacing_zyx[::-1], dtype=float)
    rzs = rz @ ry @ rx @ np.diag(zooms)
    centre = (np.array(shape_zyx[::-1], dtype=float) - 1) / 2
    affine = np.eye(4)
    affine[:3, :3] = rzs
    affine[:3, 3] = -rzs @ centre + rng.uniform(-20, 20, size=3)
    return affine


class _Anatomy:
    """Seeded anatomy parameters (mm) for one phantom; renders any contraction state."""

    def __init__(
        self,
        rng: np.random.Generator,
        n_slices: int,
        size: tuple[int, int],
        spacing_zyx: tuple[float, float, float],
    ) -> None:
        self.n_slices = n_slices
        ny, nx = size
        sz, sy, sx = spacing_zyx
        self.fov = (ny * sy, nx * sx)
        self.y = ((np.arange(ny) + 0.5) * sy)[None, :, None]
        self.x = ((np.arange(nx) + 0.5) * sx)[None, None, :]
        fy, fx = self.fov
        u = rng.uniform
        # body and chest
        self.body_c = (fy * (0.5 + u(-0.03, 0.03)), fx * (0.5 + u(-0.03, 0.03)))
        self.body_r = (fy * u(0.32, 0.38), fx * u(0.42, 0.47))
        self.fat_w = u(6.0, 12.0)
        # heart: LV centre, drifting a few mm per slice toward the apex
        self.lv_c = (fy * (0.47 + u(-0.05, 0.05)), fx * (0.53 + u(-0.05, 0.05)))
        self.drift = (u(-1.5, 1.5), u(-1.5, 1.5))
        scale = min(1.0, min(fy, fx) / 200.0) * u(0.85, 1.15)
        self.r_lv = 24.0 * scale  # ED cavity radius at the base
        self.ecc = u(0.88, 1.12)
        self.myo = u(8.0, 11.0)  # ED wall thickness
        self.k_lv = u(0.22, 0.32)  # radial contraction at ES
        self.k_rv = u(0.15, 0.28)
        self.apex_cav = u(0.82, 0.92)  # fraction of the stack where the cavity ends
        self.apex_epi = u(1.02, 1.10)
        self.rv_end = u(0.6, 0.8)  # fraction where the RV disappears
        theta = np.deg2rad(u(140.0, 170.0))  # RV direction: image left, a little down
        self.rv_dir = (np.sin(theta), np.cos(theta))
        self.rv_wall = u(2.5, 3.5)
        self.papillary = np.deg2rad(u(-15, 15) + np.array([-60.0, 60.0]))
        self.epi_fat = u(1.5, 3.5)
        # surroundings
        side = np.array([u(0.26, 0.32), u(0.26, 0.32)]) * fx
        self.lungs = [
            ((fy * u(0.45, 0.55), fx * 0.5 - side[0]), (fy * u(0.18, 0.24), fx * u(0.1, 0.14))),
            ((fy * u(0.45, 0.55), fx * 0.5 + side[1]), (fy * u(0.18, 0.24), fx * u(0.1, 0.14))),
        ]
        self.aorta = ((self.body_c[0] + fy * u(0.17, 0.21), fx * u(0.54, 0.58)), u(9.0, 12.0))
        self.spine = ((self.body_c[0] + fy * u(0.27, 0.3), fx * 0.5), (u(12, 16), u(14, 18)))
        self.blobs = [
            (
                (u(0.2, 0.8) * fy, u(0.2, 0.8) * fx),
                u(3.0, 7.0),
                u(0.5, 0.9) if rng.random() < 0.5 else u(0.1, 0.25),
            )
            for _ in range(6)
        ]
        # bias field: exp of a smooth low-order polynomial (coil sensitivity)
        self.bias = u(-0.15, 0.15, size=5)

    def _frac(self) -> np.ndarray:
        n = max(self.n_slices - 1, 1)
        return (np.arange(self.n_slices) / n)[:, None, None]

    def background(self) -> np.ndarray:
        """The static surroundings (body, fat, lungs, aorta, spine, blobs) as ``(y, x)``."""
        y, x = self.y[0], self.x[0]
        img = np.zeros((y.shape[0], x.shape[1]), dtype=np.float32)

        def ellipse(cy, cx, ry, rx):
            return ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1.0

        (by, bx), (ry, rx) = self.body_c, self.body_r
        body = ellipse(by, bx, ry, rx)
        inner = ellipse(by, bx, ry - self.fat_w, rx - self.fat_w)
        img[body] = _FAT
        img[inner] = _TISSUE
        for (cy, cx), r, value in self.blobs:
            img[inner & ellipse(cy, cx, r, r * 1.3)] = value
        for (cy, cx), (ly, lx) in self.lungs:
            img[inner & ellipse(cy, cx, ly, lx)] = _LUNG
        (ay, ax), ar = self.aorta
        img[ellipse(ay, ax, ar, ar)] = _BLOOD * 0.95
        (sy, sx), (sry, srx) = self.spine
        img[ellipse(sy, sx, sry, srx)] = _BONE
        img[ellipse(sy, sx, sry * 0.55, srx * 0.55)] = 0.6
        return img

    def render(self, c: float, background: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Image (before noise) and labels at contraction ``c`` (0 = ED, 1 = ES)."""
        y, x = self.y, self.x
        frac = self._frac()
        shape = (self.n_slices, y.shape[1], x.shape[2])
        img = np.broadcast_to(background, shape).copy()
        lab = np.zeros(shape, dtype=np.uint8)

        # heart geometry per slice (arrays of shape (z, 1, 1))
        cy = self.lv_c[0] + self.drift[0] * frac * self.n_slices
        cx = self.lv_c[1] + self.drift[1] * frac * self.n_slices
        r_ed = self.r_lv * np.sqrt(np.clip(1 - (frac / self.apex_cav) ** 2, 0, None))
        epi_ed = (self.r_lv + self.myo) * np.sqrt(
            np.clip(1 - (frac / self.apex_epi) ** 2, 0, None)
        )
        r_cav = r_ed * (1 - self.k_lv * c)
        r_epi = np.sqrt(np.maximum(epi_ed**2 - r_ed**2 + r_cav**2, 0.0))  # myocardial area kept
        dy, dx = y - cy, x - cx
        rho = np.sqrt((dy * self.ecc) ** 2 + (dx / self.ecc) ** 2)
        lv_cav = rho <= r_cav
        lv_epi = rho <= r_epi

        # RV crescent: an ellipse offset toward rv_dir minus the LV (and RV septal wall)
        rv_scale = np.sqrt(np.clip(1 - (frac / self.rv_end) ** 2, 0, None)) * (1 - self.k_rv * c)
        epi_ref = (self.r_lv + self.myo) * rv_scale
        uy, ux = self.rv_dir
        ccy, ccx = cy + uy * 0.75 * epi_ref, cx + ux * 0.75 * epi_ref
        par = (y - ccy) * uy + (x - ccx) * ux
        perp = -(y - ccy) * ux + (x - ccx) * uy
        a_par, a_perp = np.maximum(epi_ref * 0.85, 1e-3), np.maximum(epi_ref * 1.3, 1e-3)
        has_rv = epi_ref > 4.0

        def rv_ellipse(grow):
            return (par / (a_par + grow)) ** 2 + (perp / (a_perp + grow)) ** 2 <= 1

        septum = rho <= r_epi + self.rv_wall
        rv_cav = rv_ellipse(0.0) & ~septum & has_rv
        heart = lv_epi | (rv_ellipse(self.rv_wall) & has_rv)
        # epicardial fat around the heart, then the heart on top
        fat = (rho <= r_epi + self.epi_fat) | (rv_ellipse(self.rv_wall + self.epi_fat) & has_rv)
        img[fat] = _FAT * 0.95
        img[heart] = _MYO
        img[rv_cav] = _BLOOD * 0.95
        img[lv_cav] = _BLOOD
        lab[rv_cav] = RV
        lab[lv_epi & ~lv_cav] = MYO
        lab[lv_cav] = LV

        # papillary muscles: dark dots in the LV cavity near the free wall (labelled LV)
        away = np.arctan2(-uy, -ux)
        for a in self.papillary:
            d = r_cav * 0.72
            py, px = cy + d * np.sin(away + a), cx + d * np.cos(away + a)
            pr = np.maximum(r_cav * 0.14, 0.1)
            pap = ((y - py) ** 2 + (x - px) ** 2 <= pr**2) & lv_cav & (r_cav > 8.0)
            img[pap] = _MYO * 1.2
        return img, lab

    def bias_field(self) -> np.ndarray:
        """Smooth multiplicative bias (1 at the centre, within about 0.55-1.8) over y, x and z."""
        fy, fx = self.fov
        yn = (self.y / fy - 0.5) * 2
        xn = (self.x / fx - 0.5) * 2
        zn = (self._frac() - 0.5) * 2
        b = self.bias
        poly = (
            b[0] * yn + b[1] * xn + b[2] * yn * xn + 0.5 * b[3] * (yn**2 + xn**2) + 0.1 * b[4] * zn
        )
        return np.exp(poly).astype(np.float32)


def _finish(
    clean: np.ndarray, bias: np.ndarray, rng: np.random.Generator, noise: float, blur: float
) -> np.ndarray:
    """Partial-volume blur in-plane, bias field and Rician noise."""
    sigma = (0,) * (clean.ndim - 2) + (blur, blur)
    img = ndimage.gaussian_filter(clean, sigma=sigma, mode="nearest") * bias
    real = img + np.float32(noise) * rng.standard_normal(img.shape, dtype=np.float32)
    imag = np.float32(noise) * rng.standard_normal(img.shape, dtype=np.float32)
    return np.sqrt(real * real + imag * imag).astype(np.float32)


def make_phantom(
    n_slices: int = 10,
    size: tuple[int, int] = (160, 160),
    n_frames: int | None = None,
    spacing: tuple[float, float, float] = (10.0, 1.5, 1.5),
    seed: int = 0,
    *,
    noise: float | None = None,
) -> Phantom:
    """Make a seeded short-axis phantom: 3D ``(z, y, x)``, or 4D ``(t, z, y, x)`` if ``n_frames``.

    ``spacing`` is ``(slice, row, column)`` in mm. In a cine, frame 0 is end-diastole and
    frame ``round(n_frames / 3)`` end-systole; ``Phantom.spacing`` then starts with the frame
    time ``CYCLE_S / n_frames`` in seconds. ``noise`` is the Rician sigma (default: drawn
    from 0.02-0.04 by the seed). The same arguments always give the same arrays.
    """
    if n_slices < 1 or len(size) != 2 or min(size) < 16:
        raise ValueError("Need n_slices >= 1 and an in-plane size of at least 16 x 16.")
    if n_frames is not None and n_frames < 1:
        raise ValueError("n_frames must be at least 1 (or None for a 3D phantom).")
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError("spacing must be three positive numbers (slice, row, column) in mm.")
    rng = np.random.default_rng(seed)
    spacing = tuple(float(s) for s in spacing)
    anatomy = _Anatomy(rng, n_slices, (int(size[0]), int(size[1])), spacing)
    affine = _oblique_affine(rng, (n_slices, int(size[0]), int(size[1])), spacing)
    sigma = float(rng.uniform(0.02, 0.04)) if noise is None else float(noise)
    blur = 0.6
    bias = anatomy.bias_field()

    if n_frames is None:
        clean, labels = anatomy.render(0.0, anatomy.background())
        image = _finish(clean, bias, rng, sigma, blur)
        return Phantom(image, labels, spacing, affine)

    es = max(1, round(n_frames / 3)) if n_frames > 1 else 0
    background = anatomy.background()
    frames = [anatomy.render(contraction(t, n_frames, es), background) for t in range(n_frames)]
    clean = np.stack([f[0] for f in frames])
    labels = np.stack([f[1] for f in frames])
    image = _finish(clean, bias, rng, sigma, blur)
    frame_time = round(CYCLE_S / n_frames, 6)
    return Phantom(image, labels, (frame_time, *spacing), affine, es_frame=es)


def write_phantom_dataset(
    folder: str | os.PathLike[str],
    n_cases: int = 3,
    seed: int = 0,
    *,
    n_slices: int = 8,
    size: tuple[int, int] = (128, 128),
    n_frames: int = 12,
) -> list[Path]:
    """Write a small ACDC-like NIfTI dataset of phantoms; returns the written file paths.

    For case ``k`` (1-based) the folder ``caseKKK/`` gets ``caseKKK_frame01.nii.gz`` (ED),
    ``caseKKK_frameNN.nii.gz`` (ES, ``NN = round(n_frames / 3) + 1``), their
    ``..._gt.nii.gz`` label files and an ACDC-style ``Info.cfg`` (ED, ES, Group, NbFrame).
    Each case has its own anatomy (seeded from ``seed`` and ``k``) and spacing.
    """
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    es = max(1, round(n_frames / 3))
    written: list[Path] = []
    for k in range(1, n_cases + 1):
        case_rng = np.random.default_rng([seed, k])
        inplane = float(np.round(case_rng.uniform(1.3, 1.8), 4))
        thickness = float(case_rng.choice([5.0, 8.0, 10.0]))
        cine = make_phantom(
            n_slices, size, n_frames, (thickness, inplane, inplane), seed=int(seed * 1000 + k)
        )
        case = f"case{k:03d}"
        case_dir = root / case
        case_dir.mkdir(exist_ok=True)
        for t in (0, es):
            frame = cine.frame(t)
            stem = case_dir / f"{case}_frame{t + 1:02d}"
            image_vol = frame.to_volume("image")
            written.append(
                Path(write_nifti(f"{stem}.nii.gz", frame.image, image_vol, kind="image"))
            )
            written.append(
                Path(write_nifti(f"{stem}_gt.nii.gz", frame.labels, image_vol, kind="labels"))
            )
        (case_dir / "Info.cfg").write_text(
            f"ED: 1\nES: {es + 1}\nGroup: NOR\nHeight: 170.0\nNbFrame: {n_frames}\nWeight: 70.0\n"
        )
    return written
