"""Nothing the user had is lost: disk full, SIGTERM, stale temp files, name clashes,
locked outputs, resume settings, time-based checkpoints, label files, outputs checked first."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_pix2rep.cli import main
from napari_pix2rep.evaluation.phantom import make_phantom
from napari_pix2rep.io import outputs
from napari_pix2rep.io.datafiles import find_training_images, is_label_name
from napari_pix2rep.io.nifti import is_label_file
from napari_pix2rep.io.nifti_write import write_nifti
from napari_pix2rep.io.outputs import OutputLock, atomic_write, clean_stale_temps, temp_path

CLASSES = ("background", "RV", "MYO", "LV")


def temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


def dead_pid() -> int:
    """The id of a process that has just ended (not reused this fast)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Tiny image + annotation, a one-step backbone and an (untrained) segmenter file."""
    from napari_pix2rep.model.nets.unet import UNet, preset
    from napari_pix2rep.model.preprocess import PreprocessConfig
    from napari_pix2rep.model.segmenter import Segmenter
    from napari_pix2rep.pretrain.config import PretrainConfig
    from napari_pix2rep.pretrain.run import Pretrainer
    from napari_pix2rep.pretrain.slices import SliceBank

    root = tmp_path_factory.mktemp("lost")
    ph = make_phantom(n_slices=4, size=(64, 64), seed=4)
    vol = ph.to_volume("image")
    image = write_nifti(root / "heart.nii.gz", ph.image, vol, kind="image")
    ann = np.zeros_like(ph.labels)
    ann[1] = ph.labels[1]
    labels = write_nifti(root / "heart_labels.nii.gz", ann, vol, kind="labels")
    bank = SliceBank.from_arrays([(ph.image, ph.spacing)], PreprocessConfig())
    backbone = root / "bb.pt"
    cfg = PretrainConfig(preset="tiny", steps=1, batch_size=2, crop=32)
    Pretrainer(bank, cfg, out=backbone, device="cpu").run()
    seg = root / "seg.pt"
    Segmenter(UNet(preset("tiny")), CLASSES).save(seg)
    return {"root": root, "image": image, "labels": labels, "backbone": backbone, "seg": seg}


@pytest.fixture
def data(tmp_path):
    """A folder with one image and its label file, as pretraining finds them."""
    ph = make_phantom(n_slices=4, size=(64, 64), seed=5)
    vol = ph.to_volume("image")
    folder = tmp_path / "data"
    folder.mkdir()
    write_nifti(folder / "a.nii.gz", ph.image, vol, kind="image")
    write_nifti(folder / "a_gt.nii.gz", ph.labels, vol, kind="labels")
    return folder


def pretrain_args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "pretrain",
        str(data),
        "--out",
        str(out),
        "--preset",
        "tiny",
        "--batch-size",
        "2",
        "--device",
        "cpu",
        *extra,
    ]


def train_args(files, out: Path) -> list[str]:
    return [
        "train",
        "--image",
        files["image"],
        "--labels",
        files["labels"],
        "--model",
        str(files["backbone"]),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--steps",
        "1",
    ]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


# ---------------------------------------------------------------------------- disk full


def _disk_full_after_some_bytes(obj, fh, *args, **kwargs):
    """What torch.save does on a full disk: some bytes out, then its writer fails with a
    RuntimeError raised while handling the OSError."""
    fh.write(b"PK\x03\x04 partial")
    try:
        raise OSError(errno.ENOSPC, "No space left on device")
    except OSError:
        raise RuntimeError("[enforce fail at inline_container.cc:672] unexpected pos") from None


@pytest.mark.parametrize("command", ["train", "pretrain"])
def test_disk_full_names_the_file_and_keeps_the_previous_one(
    command, files, data, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "model.pt"
    out.write_bytes(b"the previous model")
    monkeypatch.setattr(torch, "save", _disk_full_after_some_bytes)
    argv = (
        train_args(files, out) if command == "train" else pretrain_args(data, out, "--steps", "1")
    )
    assert main(argv) == 2
    err = one_line_error(capsys)
    assert f"Could not write {out}: the disk is full" in err, err
    assert "the previous model.pt is intact" in err, err
    assert out.read_bytes() == b"the previous model"
    assert temps(tmp_path) == []


def test_atomic_write_errors_name_the_file_and_remove_the_temp(tmp_path):
    target = tmp_path / "x.bin"

    def fails(fh):
        fh.write(b"half")
        raise OSError(errno.EACCES, "Permission denied")

    with pytest.raises(outputs.OutputError, match=r"x\.bin: permission denied; nothing was"):
        atomic_write(target, fails)
    assert not target.exists() and temps(tmp_path) == []
    atomic_write(target, lambda fh: fh.write(b"whole"))
    assert target.read_bytes() == b"whole" and temps(tmp_path) == []


# ---------------------------------------------------------------------------- SIGTERM


@pytest.fixture
def sigterm_guard():
    """Until a command installs its own handler, SIGTERM raises this test's error (the
    default would kill the test process)."""

    class Unhandled(Exception):
        pass

    def guard(signum, frame):
        raise Unhandled("SIGTERM was not handled by the command")

    previous = signal.signal(signal.SIGTERM, guard)
    yield
    signal.signal(signal.SIGTERM, previous)


def _terminate_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    deadline = time.monotonic() + 10  # the handler runs at the next bytecode
    while time.monotonic() < deadline:
        time.sleep(0.01)


def test_sigterm_stops_train_without_a_file(files, tmp_path, monkeypatch, capsys, sigterm_guard):
    import napari_pix2rep.segment.training as training
    from napari_pix2rep.core.progress import Progress

    closed = []

    def steps_then_terminated(*args, **kwargs):
        try:
            for step in range(1, 1000):
                if step == 2:
                    os.kill(os.getpid(), signal.SIGTERM)  # mid-step: the step ends first
                    time.sleep(0.2)
                yield Progress("probe", step, 1000)
        finally:
            closed.append(step)
        raise AssertionError("SIGTERM did not stop training")

    monkeypatch.setattr(training, "train_segmenter_iter", steps_then_terminated)
    out = tmp_path / "seg.pt"
    assert main(train_args(files, out)) == 130
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("Stopping after this step"), lines
    assert lines[-1] == "pix2rep train: interrupted; files already saved are intact."
    assert closed == [2]  # stopped at the boundary after the step the signal came in
    assert not out.exists() and temps(tmp_path) == []
    assert signal.getsignal(signal.SIGTERM).__name__ == "guard"  # handler restored


def test_sigterm_during_predict_leaves_no_partial_file(
    files, tmp_path, monkeypatch, capsys, sigterm_guard
):
    import nibabel as nib

    second = tmp_path / "other.nii.gz"
    second.write_bytes(Path(files["image"]).read_bytes())
    real_save = nib.save
    calls = []

    def save_then_terminated(img, filename):
        calls.append(filename)
        if len(calls) == 1:
            return real_save(img, filename)
        Path(filename).write_bytes(b"\x1f\x8b half a file")
        _terminate_self()

    monkeypatch.setattr(nib, "save", save_then_terminated)
    out = tmp_path / "out"
    argv = ["predict", "--model", str(files["seg"]), files["image"], str(second)]
    assert main([*argv, "--out-dir", str(out), "--device", "cpu"]) == 130
    *warned, err = capsys.readouterr().err.strip().splitlines()  # warned: "empty segmentation"
    assert "interrupted" in err and all(": warning: " in w for w in warned)
    assert sorted(p.name for p in out.iterdir()) == ["heart_seg.nii.gz"]  # whole, no temp
    assert nib.load(out / "heart_seg.nii.gz").shape == nib.load(files["image"]).shape


def test_stale_temps_of_a_killed_run_are_cleaned_on_the_next_run(files, tmp_path, capsys):
    host = outputs.host_name()
    out = tmp_path / "out"
    out.mkdir()
    killed = out / f".heart_seg.nii.gz.{host}.{dead_pid()}.0123abcd.tmp.nii.gz"
    running = out / f".x.pt.{host}.{os.getpid()}.89abcdef.tmp"  # a live writer's
    other_host = out / ".x.pt.elsewhere.1.00000000.tmp"  # maybe alive there
    not_ours = out / ".notes.tmp"
    for p in (killed, running, other_host, not_ours):
        p.write_bytes(b"x")
    hour_ago = time.time() - 3600
    os.utime(not_ours, (hour_ago, hour_ago))
    argv = ["predict", "--model", str(files["seg"]), files["image"], "--out-dir", str(out)]
    assert main([*argv, "--device", "cpu"]) == 0
    left = {p.name for p in out.iterdir()}
    assert killed.name not in left
    assert {running.name, other_host.name, not_ours.name, "heart_seg.nii.gz"} == left
    os.utime(other_host, (hour_ago, hour_ago))  # no save takes an hour
    assert clean_stale_temps(out) == [other_host]


def test_temp_names_are_recognised():
    name = temp_path("/d/scan.nii.gz", ".nii.gz").name
    assert outputs._TEMP.match(name) and name.endswith(".tmp.nii.gz")
    assert outputs._TEMP.match(name)["host"] == outputs.host_name()


# ---------------------------------------------------------------------------- predict names


def test_predict_refuses_inputs_that_would_share_an_output(tmp_path, capsys):
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "scan.nii.gz").write_bytes(b"")
    a, b = str(tmp_path / "a/scan.nii.gz"), str(tmp_path / "b/scan.nii.gz")
    out = tmp_path / "O"
    # the model is never opened: the clash is found before any work
    argv = ["predict", "--model", str(tmp_path / "none.pt"), a, b, "--out-dir", str(out)]
    assert main(argv) == 2
    err = one_line_error(capsys)
    assert f"{a} and {b} would both be written to {out / 'scan_seg.nii.gz'}" in err, err
    assert not out.exists()  # refused before any work: not even the folder is left


def test_predict_refuses_to_overwrite_an_input(tmp_path, capsys):
    img, seg = tmp_path / "x.nii.gz", tmp_path / "x_seg.nii.gz"
    img.write_bytes(b"")
    seg.write_bytes(b"my own segmentation")
    argv = ["predict", "--model", str(tmp_path / "none.pt"), str(img), str(seg)]
    assert main([*argv, "--out-dir", str(tmp_path)]) == 2
    assert "is an input and also the output" in one_line_error(capsys)
    assert seg.read_bytes() == b"my own segmentation"


# ---------------------------------------------------------------------------- output lock


def test_a_second_pretrain_on_one_output_is_refused(data, tmp_path, capsys):
    out = tmp_path / "bb.pt"
    with OutputLock(out):  # a run in progress (this live process)
        assert main(pretrain_args(data, out, "--steps", "1")) == 2
        err = one_line_error(capsys)
        assert f"{out} is being written by another run (process {os.getpid()}" in err, err
        assert not out.exists()
    assert not out.with_name("bb.pt.lock").exists()  # released


def test_a_stale_lock_is_taken_over_with_a_note(data, tmp_path, capsys):
    out = tmp_path / "bb.pt"
    lock = out.with_name("bb.pt.lock")
    holder = {"pid": dead_pid(), "host": outputs.host_name(), "time": "2026-01-01 00:00:00"}
    lock.write_text(json.dumps(holder))
    assert main(pretrain_args(data, out, "--steps", "1")) == 0
    assert "Took over the stale lock bb.pt.lock" in capsys.readouterr().err
    assert out.is_file() and not lock.exists()


def test_a_lock_held_on_another_host_is_respected(tmp_path):
    out = tmp_path / "bb.pt"
    holder = {"pid": 1, "host": f"not-{socket.gethostname()}", "time": "now"}
    out.with_name("bb.pt.lock").write_text(json.dumps(holder))
    with pytest.raises(outputs.OutputError, match="being written by another run"):
        OutputLock(out).acquire()


# ---------------------------------------------------------------------------- resume


def test_resume_refuses_settings_that_change_the_run_and_honours_cadence(data, tmp_path, capsys):
    out = tmp_path / "bb.pt"
    assert main(pretrain_args(data, out, "--steps", "1")) == 0
    before = out.read_bytes()
    resume = ["--resume", str(out), "--steps", "2"]
    for flag, value, shown in [
        ("--lr", "0.01", "--lr 0.01 (the run's 0.00047)"),
        ("--batch-size", "3", "--batch-size 3 (the run's 2)"),
        ("--loss", "barlow", "--loss barlow (the run's infonce)"),
        ("--seed", "7", "--seed 7 (the run's 0)"),
    ]:
        capsys.readouterr()
        assert main(pretrain_args(data, out, *resume, flag, value)) == 2
        err = one_line_error(capsys)
        assert shown in err and "drop them" in err, err
        assert out.read_bytes() == before
    capsys.readouterr()
    # same values given again, and a new snapshot cadence: accepted and honoured
    assert main(pretrain_args(data, out, *resume, "--seed", "0", "--snapshot-every", "2")) == 0
    assert (tmp_path / "bb_step2.pt").is_file()
    assert torch.load(out, weights_only=True)["meta"]["steps"] == 2


# ---------------------------------------------------------------------------- time checkpoints


def test_checkpoints_are_also_saved_by_time(tmp_path, monkeypatch):
    import napari_pix2rep.pretrain.run as pretrain
    from napari_pix2rep.model.preprocess import PreprocessConfig
    from napari_pix2rep.pretrain.config import PretrainConfig
    from napari_pix2rep.pretrain.slices import SliceBank

    ph = make_phantom(n_slices=2, size=(48, 48), seed=6)
    bank = SliceBank.from_arrays([(ph.image, ph.spacing)], PreprocessConfig())
    cfg = PretrainConfig(preset="tiny", steps=5, batch_size=1, crop=32, checkpoint_every=1000)
    assert cfg.checkpoint_minutes == 2.0  # the default
    saved_at = []
    real_save = pretrain.atomic_torch_save
    monkeypatch.setattr(
        pretrain,
        "atomic_torch_save",
        lambda state, path: saved_at.append(state["meta"]["steps"]) or real_save(state, path),
    )
    trainer = pretrain.Pretrainer(bank, cfg, out=tmp_path / "bb.pt", device="cpu")
    now = [0.0]

    def clock():  # 61 s pass at every reading: a save is due every second step
        now[0] += 61.0
        return now[0]

    trainer.clock = clock
    trainer.run()
    assert saved_at == [2, 4, 5]  # by time at 2 and 4, and at the end
    assert torch.load(tmp_path / "bb.pt", weights_only=True)["meta"]["steps"] == 5
    assert temps(tmp_path) == []


# ---------------------------------------------------------------------------- label files


def test_one_rule_for_label_files(tmp_path):
    names = [
        "a.nii.gz",
        "a_gt.nii.gz",
        "B_SEG.nii",
        "c_labels.nii.gz",
        "d_mask.nii",
        "e_Label.nii",
    ]
    names += ["seg_notes.nii.gz", "f_gt_crop.nii.gz"]
    for n in names:
        (tmp_path / n).write_bytes(b"")
    found = find_training_images([tmp_path])
    assert [f.name for f in found.images] == ["a.nii.gz", "f_gt_crop.nii.gz", "seg_notes.nii.gz"]
    assert len(found.labels) == 5
    assert found.summary().startswith("3 files (skipped: 5 label files")
    integral = np.zeros((2, 2, 2), np.float32)  # labels by name only
    for n in names:  # the reader opens exactly these as labels layers
        assert is_label_file(n, integral) == is_label_name(n), n


def test_pretrain_cli_skips_label_files_and_says_so(data, tmp_path, capsys):
    out = tmp_path / "bb.pt"
    assert main(pretrain_args(data, out, "--steps", "1")) == 0
    log = capsys.readouterr().out
    assert "1 file (skipped: 1 label file named *_gt" in log, log
    assert torch.load(out, weights_only=True)["meta"]["data"] == [str(data / "a.nii.gz")]


# ---------------------------------------------------------------------------- outputs first


@pytest.mark.parametrize("command", ["train", "pretrain", "predict"])
@pytest.mark.parametrize("where", ["folder", "under_a_file"])
def test_outputs_are_checked_before_any_work(
    command, where, files, data, tmp_path, monkeypatch, capsys
):
    import napari_pix2rep.io.images as images
    import napari_pix2rep.jobs as jobs
    import napari_pix2rep.model.segmenter as segmenter
    import napari_pix2rep.pretrain.run as pretrain
    import napari_pix2rep.segment.training as training

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the output was checked")

    monkeypatch.setattr(training, "train_segmenter_iter", no_work)
    monkeypatch.setattr(images, "read_image", no_work)
    monkeypatch.setattr(pretrain, "Pretrainer", no_work)
    monkeypatch.setattr(segmenter.Segmenter, "from_file", no_work)
    monkeypatch.setattr(jobs, "load_model_source", no_work)
    (tmp_path / "a_file").write_bytes(b"")
    if command == "predict":
        target = tmp_path / "a_file" if where == "folder" else tmp_path / "a_file" / "out"
        argv = ["predict", "--model", str(files["seg"]), files["image"], "--out-dir", str(target)]
        expected = "is a file, not a folder"
    else:
        target = tmp_path if where == "folder" else tmp_path / "a_file" / "m.pt"
        argv = train_args(files, target) if command == "train" else pretrain_args(data, target)
        expected = "is a folder; give a file name" if where == "folder" else "a file, not a folder"
    assert main(argv) == 2
    err = one_line_error(capsys)
    assert expected in err and str(target.parent if where != "folder" else target) in err, err


def test_torch_floor_excludes_unsafe_loaders():
    import re

    text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    major, minor = re.search(r'"torch>=(\d+)\.(\d+)"', text).groups()
    assert (int(major), int(minor)) >= (2, 10)  # CVE-2025-32434 < 2.6; loader bugs < 2.10
