"""The npe2 manifest: valid, discovered by napari's plugin manager, shipped inside the wheel."""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
import zipfile
from importlib import import_module
from pathlib import Path

import pytest
from npe2 import PluginManager, PluginManifest

REPO = Path(__file__).resolve().parents[1]
PLUGIN = "napari-pix2rep"


def test_manifest_at_root_and_symlinked_into_package():
    link = REPO / "napari_pix2rep" / "napari.yaml"
    assert (REPO / "napari.yaml").is_file()
    assert link.is_symlink() and link.resolve() == (REPO / "napari.yaml").resolve()


def test_manifest_is_valid_and_python_names_resolve():
    manifest = PluginManifest.from_file(REPO / "napari.yaml")
    assert manifest.name == PLUGIN
    manifest.validate_imports()  # imports every python_name (the dock pulls in qtpy)
    for command in manifest.contributions.commands:
        module, _, attr = command.python_name.partition(":")
        assert callable(getattr(import_module(module), attr))


def test_npe2_validate_cli():
    npe2 = shutil.which("npe2") or str(Path(sys.executable).parent / "npe2")
    result = subprocess.run(
        [npe2, "validate", str(REPO / "napari.yaml")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_plugin_discovered_with_its_contributions():
    """The installed package (editable or wheel) is found through its entry point."""
    pm = PluginManager.instance()
    pm.discover(include_npe1=False)
    if PLUGIN not in pm:
        pytest.fail(f"{PLUGIN} not discovered: install it first (pip install -e .)")
    contributions = pm.get_manifest(PLUGIN).contributions
    assert len(contributions.readers) == 1
    assert len(contributions.writers) == 2
    assert {w.layer_types[0] for w in contributions.writers} == {"labels", "image"}
    assert sorted(s.key for s in contributions.sample_data) == ["phantom_3d", "phantom_4d"]
    assert len(contributions.widgets) == 1
    readers = list(pm.iter_compatible_readers(["x.nii.gz"]))
    assert any(r.command.startswith(PLUGIN) for r in readers)


def _copy_source(dest: Path) -> Path:
    """Copy the files a wheel is built from (symlinks kept) to build out of the tree."""
    dest.mkdir()
    for name in ("pyproject.toml", "napari.yaml", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    shutil.copytree(
        REPO / "napari_pix2rep",
        dest / "napari_pix2rep",
        symlinks=True,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    return dest


@pytest.mark.slow
def test_wheel_ships_manifest_and_all_modules(tmp_path):
    src = _copy_source(tmp_path / "src")
    dist = tmp_path / "dist"
    result = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "-x", "--outdir", str(dist)],
        cwd=src,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (wheel,) = dist.glob("napari_pix2rep-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        info = zf.getinfo("napari_pix2rep/napari.yaml")
        mode = info.external_attr >> 16
        assert not stat.S_ISLNK(mode), "napari.yaml is stored as a symlink in the wheel"
        assert zf.read(info) == (REPO / "napari.yaml").read_bytes()
        names = set(zf.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        text = zf.read(entry_points).decode()
    assert "[napari.manifest]" in text and "napari_pix2rep:napari.yaml" in text
    expected = {
        p.relative_to(src).as_posix()
        for p in (src / "napari_pix2rep").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    missing = sorted(expected - names)
    assert not missing, f"modules missing from the wheel (check [tool.setuptools]): {missing}"
