"""The pix2rep console script, end to end on synthetic data, and its error messages."""

import json

import nibabel as nib
import numpy as np
import pytest

from napari_pix2rep.cli import main
from napari_pix2rep.evaluation.phantom import make_phantom
from napari_pix2rep.io.nifti import read_nifti
from napari_pix2rep.io.nifti_write import write_nifti


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A phantom image, its truth and a two-slice annotation, written as NIfTI."""
    root = tmp_path_factory.mktemp("cli")
    ph = make_phantom(n_slices=8, size=(96, 96), seed=3)
    vol = ph.to_volume("image")
    img = write_nifti(root / "heart.nii.gz", ph.image, vol, kind="image")
    gt = write_nifti(root / "heart_gt.nii.gz", ph.labels, vol, kind="labels")
    ann = np.zeros_like(ph.labels)
    ann[2], ann[5] = ph.labels[2], ph.labels[5]
    lab = write_nifti(root / "heart_labels.nii.gz", ann, vol, kind="labels")
    return {"root": root, "image": img, "gt": gt, "labels": lab}


def test_train_predict_evaluate_measure(case, tiny_backbone_file, capsys):
    root = case["root"]
    seg = root / "seg.pt"
    assert (
        main(
            [
                "train",
                "--image",
                case["image"],
                "--labels",
                case["labels"],
                "--model",
                str(tiny_backbone_file),
                "--out",
                str(seg),
                "--device",
                "cpu",
                "--mode",
                "finetune",
                "--steps",
                "100",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "predict",
                "--model",
                str(seg),
                case["image"],
                "--out-dir",
                str(root / "out"),
                "--uncertainty",
            ]
        )
        == 0
    )
    pred = root / "out" / "heart_seg.nii.gz"
    written, source = nib.load(pred), nib.load(case["image"])
    np.testing.assert_array_equal(written.affine, source.affine)
    assert written.header.get_zooms() == source.header.get_zooms()
    assert (root / "out" / "heart_uncertainty.nii.gz").is_file()
    capsys.readouterr()
    assert main(["evaluate", "--pred", str(pred), "--gt", case["gt"], "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    # two annotated slices of eight, a briefly pretrained tiny backbone fine-tuned; a
    # broken pipeline (wrong axes, flipped or shifted output, labels off by one) stays
    # far below this
    assert result["mean"]["LV"] > 0.7 and result["mean"]["mean"] > 0.5, result["mean"]
    assert main(["measure", str(pred)]) == 0
    assert "LV" in capsys.readouterr().out


def test_measure_ed_es_pair(case, tmp_path, capsys):
    ph = make_phantom(n_slices=6, size=(96, 96), n_frames=6, seed=1)
    vol4 = ph.frame(0).to_volume("labels")
    ed = write_nifti(tmp_path / "ed_seg.nii.gz", ph.labels[0], vol4, kind="labels")
    es = write_nifti(tmp_path / "es_seg.nii.gz", ph.labels[ph.es_frame], vol4, kind="labels")
    assert main(["measure", ed, es, "--json"]) == 0
    out = capsys.readouterr()
    m = json.loads(out.out)
    assert m["ed"] == ed and 20 < m["measures"]["LV_EF"] < 90 and out.err == ""
    # the other order is taken as given (like the dock's ED / ES choice), with a note
    assert main(["measure", es, ed, "--json"]) == 0
    out = capsys.readouterr()
    m = json.loads(out.out)
    assert m["ed"] == es and m["measures"]["LV_EF"] < 0
    assert out.err.strip() == (
        "pix2rep measure: note: the ES segmentation has a larger LV than the ED one: "
        "check the order (ED first)."
    )


def test_pretrain_cli_and_resume(tmp_path, capsys):
    from napari_pix2rep.evaluation.phantom import write_phantom_dataset

    write_phantom_dataset(tmp_path / "data", n_cases=1, n_slices=4, size=(64, 64), n_frames=4)
    out = tmp_path / "bb.pt"
    args = [
        "pretrain",
        str(tmp_path / "data"),
        "--exclude",
        "*_gt*",
        "--preset",
        "tiny",
        "--batch-size",
        "2",
        "--out",
        str(out),
        "--device",
        "cpu",
        "--log-every",
        "1",
    ]
    assert main([*args, "--steps", "2"]) == 0
    assert main([*args, "--steps", "4", "--resume", str(out)]) == 0
    text = capsys.readouterr().out
    assert "steps 2 -> 4" in text and "step 4/4" in text
    assert main([*args, "--steps", "2", "--exclude", "*.nii.gz"]) == 2
    assert "No NIfTI images" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["predict", "--model", "{bb}", "{image}", "--out-dir", "{root}/x"],
            "is a pretrained backbone, not a segmenter",
        ),
        (
            [
                "train",
                "--image",
                "{image}",
                "--labels",
                "{bad_grid}",
                "--out",
                "{root}/s.pt",
                "--model",
                "{bb}",
            ],
            "not on the grid",
        ),
        (
            [
                "train",
                "--image",
                "{image}",
                "--labels",
                "{empty}",
                "--out",
                "{root}/s.pt",
                "--model",
                "{bb}",
            ],
            "No annotated slice",
        ),
        (
            [
                "train",
                "--image",
                "{image}",
                "--labels",
                "{wrong_values}",
                "--out",
                "{root}/s.pt",
                "--model",
                "{bb}",
            ],
            "not among the 4 classes",
        ),
        (
            [
                "train",
                "--image",
                "{image}",
                "--labels",
                "{labels}",
                "--out",
                "{root}/s.pt",
                "--model",
                "{image}",
            ],
            "not a napari-pix2rep model file",
        ),
        (["evaluate", "--pred", "{labels}", "--gt", "{bad_grid}"], "same grid"),
        (
            ["evaluate", "--pred", "{labels}", "--gt", "{labels}", "--classes", "RV,LV,rv"],
            "listed twice",
        ),
        (
            ["predict", "--model", "{root}/missing.pt", "{image}", "--out-dir", "{root}/x"],
            "does not exist",
        ),
    ],
)
def test_errors_are_one_sentence_and_nonzero(case, tiny_backbone_file, capsys, argv, message):
    root = case["root"]
    ph = read_nifti(case["labels"])
    small = write_nifti(
        root / "small_labels.nii.gz", ph.data[:, :50], None, kind="labels", spacing=(10, 1.5, 1.5)
    )
    empty = write_nifti(root / "empty_labels.nii.gz", np.zeros_like(ph.data), ph, kind="labels")
    wrong = write_nifti(
        root / "wrong_labels.nii.gz", np.where(ph.data > 0, 9, 0), ph, kind="labels"
    )
    fields = {
        "bb": str(tiny_backbone_file),
        "image": case["image"],
        "labels": case["labels"],
        "root": str(root),
        "bad_grid": small,
        "empty": empty,
        "wrong_values": wrong,
    }
    argv = [a.format(**fields) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.count("\n") == 0, err
    assert not (root / "s.pt").exists()


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_interrupted_pretraining_keeps_a_consistent_checkpoint(tmp_path, sig):
    """Ctrl-C (or SIGTERM) stops at a step boundary, saves, exits 130; --resume goes on."""
    import os
    import signal
    import subprocess
    import sys

    import torch

    from napari_pix2rep.evaluation.phantom import write_phantom_dataset

    write_phantom_dataset(tmp_path / "data", n_cases=1, n_slices=4, size=(64, 64), n_frames=4)
    out = tmp_path / "bb.pt"
    cmd = [
        sys.executable,
        "-u",
        "-m",
        "napari_pix2rep.cli",
        "pretrain",
        str(tmp_path / "data"),
        "--exclude",
        "*_gt*",
        "--preset",
        "tiny",
        "--batch-size",
        "2",
        "--steps",
        "100000",
        "--out",
        str(out),
        "--device",
        "cpu",
        "--log-every",
        "1",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    for line in proc.stdout:
        if line.startswith("step 3/"):
            break
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "checkpoint saved" in err
    obj = torch.load(out, weights_only=True)
    steps = obj["meta"]["steps"]
    assert steps >= 3 and len(obj["meta"]["loss_history"]) == steps
    assert (
        main(
            [
                "pretrain",
                str(tmp_path / "data"),
                "--exclude",
                "*_gt*",
                "--preset",
                "tiny",
                "--batch-size",
                "2",
                "--steps",
                str(steps + 1),
                "--out",
                str(out),
                "--device",
                "cpu",
                "--resume",
                str(out),
            ]
        )
        == 0
    )
    assert torch.load(out, weights_only=True)["meta"]["steps"] == steps + 1


# -- untrusted files in ------------------------------------------------------------------
def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


@pytest.fixture
def tiny_segmenter(tmp_path):
    """An untrained ``tiny`` segmenter file (these tests never get as far as using it)."""
    from napari_pix2rep.model.nets.unet import UNet, preset
    from napari_pix2rep.model.segmenter import Segmenter

    return Segmenter(UNet(preset("tiny"))).save(tmp_path / "seg.pt")


@pytest.fixture
def tiny_backbone(tiny_segmenter, tmp_path):
    """An untrained ``tiny`` backbone file."""
    import torch

    from napari_pix2rep.model.checkpoint import BACKBONE, atomic_torch_save

    obj = torch.load(tiny_segmenter, weights_only=True)
    obj = {k: v for k, v in obj.items() if k not in ("classes", "head")}
    return atomic_torch_save({**obj, "format": BACKBONE}, tmp_path / "bb.pt")


def test_predict_with_a_text_or_nifti_file_as_model(case, tmp_path, capsys):
    notes = tmp_path / "notes.pt"
    notes.write_text("my notes\n")
    out = ["--out-dir", str(tmp_path / "o")]
    assert main(["predict", "--model", str(notes), case["image"], *out]) == 2
    assert _one_line_error(capsys) == (
        "pix2rep predict: error: notes.pt is not a napari-pix2rep model file: it is a text "
        "file, not a PyTorch model (expected a .pt written by pix2rep pretrain or train)."
    )
    assert main(["predict", "--model", case["image"], case["image"], *out]) == 2
    err = _one_line_error(capsys)
    assert "heart.nii.gz is not a napari-pix2rep model file: it is a NIfTI image" in err
    assert "expected a .pt written by pix2rep pretrain or train" in err
    assert not (tmp_path / "o").exists()


def test_model_files_of_the_wrong_kind_or_architecture(
    case, tiny_backbone, tiny_segmenter, tmp_path, capsys
):
    import torch

    from napari_pix2rep.model.checkpoint import atomic_torch_save

    obj = torch.load(tiny_segmenter, weights_only=True)
    obj["arch"]["depth"] = 4
    other = atomic_torch_save(obj, tmp_path / "other.pt")
    out = ["--out-dir", str(tmp_path / "o")]
    assert main(["predict", "--model", str(other), case["image"], *out]) == 2
    assert "other.pt was made for a different architecture than it declares" in (
        _one_line_error(capsys)
    )
    name = tiny_backbone.name
    assert main(["predict", "--model", str(tiny_backbone), case["image"], *out]) == 2
    assert f"{name} is a pretrained backbone, not a segmenter" in _one_line_error(capsys)
    pretrain = ["pretrain", case["image"], "--preset", "tiny", "--steps", "1", "--device", "cpu"]
    assert main([*pretrain, "--out", str(tmp_path / "b.pt"), "--resume", str(tiny_segmenter)]) == 2
    assert "seg.pt holds no training state to resume" in _one_line_error(capsys)
    assert main([*pretrain, "--out", str(tmp_path / "b.pt"), "--init", case["image"]]) == 2
    assert "heart.nii.gz is not a napari-pix2rep model file: it is a NIfTI" in (
        _one_line_error(capsys)
    )
    assert not (tmp_path / "b.pt").exists()


def test_an_image_given_as_labels_is_named(case, tiny_backbone, tmp_path, capsys):
    img = read_nifti(case["image"])
    whole = write_nifti(tmp_path / "scan.nii.gz", np.round(img.data * 100), img, kind="image")
    for labels in (case["image"], whole):
        argv = ["train", "--image", case["image"], "--labels", labels]
        assert main([*argv, "--out", str(tmp_path / "s.pt"), "--model", str(tiny_backbone)]) == 2
        err = _one_line_error(capsys)
        name = labels.rsplit("/", 1)[-1]
        assert f"error: {name} looks like an image, not a label map" in err, err
    assert "distinct values; a label map has at most 32)." in err
    assert not (tmp_path / "s.pt").exists()


def _numpy_out_of_memory(*args, **kwargs):
    return np.empty((2**22, 2**30), np.float32)  # 16 PiB: refused at once


def _torch_out_of_memory(*args, **kwargs):
    import torch

    return torch.empty(2**50)  # 4 PiB: PyTorch's CPU allocator refuses at once


@pytest.mark.parametrize(
    "fail, words",
    [
        (_numpy_out_of_memory, "the computer ran out of memory (16.0 PiB was asked for): try"),
        (_torch_out_of_memory, "the computer ran out of memory (4.0 PiB was asked for): try"),
    ],
)
def test_out_of_memory_in_a_command_is_one_sentence(
    case, tiny_segmenter, tmp_path, monkeypatch, capsys, fail, words
):
    import napari_pix2rep.segment.predict

    monkeypatch.setattr(napari_pix2rep.segment.predict, "predict_iter", fail)
    argv = ["predict", "--model", str(tiny_segmenter), case["image"]]
    assert main([*argv, "--out-dir", str(tmp_path / "o")]) == 2
    err = _one_line_error(capsys)
    assert err.startswith(f"pix2rep predict: error: {words}"), err
    assert err.endswith("a smaller --batch-size, --device cpu, or fewer or smaller images.")


def test_a_runtime_error_in_a_command_is_one_sentence(case, tmp_path, monkeypatch, capsys):
    import napari_pix2rep.io.images

    def fail(*args, **kwargs):
        raise RuntimeError("Expected all tensors to be on the same device\nsecond line")

    monkeypatch.setattr(napari_pix2rep.io.images, "read_image", fail)
    assert main(["measure", case["labels"]]) == 2
    assert _one_line_error(capsys) == (
        "pix2rep measure: error: RuntimeError: Expected all tensors to be on the same device."
    )


def test_train_reads_the_background_only_sidecar(case, tiny_backbone, tmp_path, capsys):
    from napari_pix2rep.annotate.annotations import sidecar_path, write_background_slices

    labels = tmp_path / "heart_labels.nii.gz"
    labels.write_bytes(open(case["labels"], "rb").read())
    write_background_slices(labels, {0, 7}, (8, 96, 96))
    out = tmp_path / "s.pt"
    argv = ["train", "--image", case["image"], "--labels", str(labels), "--out", str(out)]
    argv += ["--model", str(tiny_backbone), "--device", "cpu", "--steps", "2"]
    assert main(argv) == 0
    assert "2 background-only slices from heart_labels.slices.json" in capsys.readouterr().out
    import torch

    used = torch.load(out, weights_only=True)["meta"]["annotated_slices"]
    assert sorted(z for _, z in used) == [0, 2, 5, 7]

    out.unlink()
    sidecar_path(labels).write_text(
        '{"format": "napari-pix2rep/annotated-slices", "shape": [8, 50, 96]}', encoding="utf-8"
    )
    assert main(argv) == 2
    err = _one_line_error(capsys)
    assert "heart_labels.slices.json was written for a grid [8, 50, 96]" in err, err
    assert not out.exists()


def test_train_classes_are_parsed_with_the_duplicate_check(case, tmp_path, capsys):
    out = tmp_path / "s.pt"
    argv = ["train", "--image", case["image"], "--labels", case["labels"], "--out", str(out)]
    assert main([*argv, "--classes", "background,LV,lv"]) == 2
    assert _one_line_error(capsys) == "pix2rep train: error: The class 'lv' is listed twice."
    assert not out.exists()


def test_predict_localises_the_heart_from_phases_given_together(
    tiny_segmenter, tmp_path, capsys, monkeypatch
):
    """ED and ES of one stack (same grid) given together: each is segmented on the heart
    region of their motion; an image on another grid, or --no-localise, on the whole view."""
    cine = make_phantom(n_slices=4, size=(64, 64), n_frames=6, seed=5)
    paths = []
    for name, t in (("p_ed", 0), ("p_es", 2)):
        frame = cine.frame(t)
        vol = frame.to_volume()
        paths.append(str(write_nifti(tmp_path / f"{name}.nii.gz", frame.image, vol, kind="image")))
    other = make_phantom(n_slices=4, size=(48, 48), seed=6)
    lone = write_nifti(tmp_path / "lone.nii.gz", other.image, other.to_volume(), kind="image")
    paths.append(str(lone))
    out = ["--out-dir", str(tmp_path / "o"), "--model", str(tiny_segmenter)]
    from napari_pix2rep.io import images

    reads = []
    real_read = images.read_image
    monkeypatch.setattr(images, "read_image", lambda p, **k: reads.append(p) or real_read(p, **k))
    assert main(["predict", *paths, *out]) == 0
    assert sorted(reads) == sorted(paths)  # each image read once (NIfTI grids: headers)
    printed = capsys.readouterr()
    lines = printed.out.strip().splitlines()
    assert len(lines) == 3
    for line in lines[:2]:
        assert "heart region from the motion between it and 1 other phase(s)" in line, line
    # the lone image's line says why it has no region, and what would localise it
    assert "whole view: no heart region found" in lines[2] and "ED and ES" in lines[2]
    assert not printed.err.strip()
    assert main(["predict", *paths[:2], *out, "--no-localise", "--overwrite"]) == 0
    assert "heart region" not in capsys.readouterr().out


def test_segment_flip_average_flag_reaches_the_settings():
    from napari_pix2rep.cli import build_parser
    from napari_pix2rep.cli.segment import _settings

    base = ["segment", "--image", "a.nii.gz", "--out-dir", "o"]
    parse = build_parser().parse_args
    assert _settings(parse(base)).flip_average is None  # as the model file asks
    assert _settings(parse([*base, "--no-flip-average"])).flip_average is False
    assert _settings(parse([*base, "--flip-average"])).flip_average is True


def test_segment_probe_head_flag_reaches_the_training_settings():
    from napari_pix2rep.cli import build_parser
    from napari_pix2rep.cli.segment import _settings

    base = ["segment", "--image", "a.nii.gz", "--out-dir", "o"]
    parse = build_parser().parse_args
    assert _settings(parse(base)).train_config().probe_head == "linear"
    chosen = _settings(parse([*base, "--probe-head", "hypercolumn"]))
    assert chosen.train_config().probe_head == "hypercolumn"


def test_train_takes_the_same_training_flags_as_segment():
    from napari_pix2rep.cli import build_parser
    from napari_pix2rep.cli.common import training_flags

    argv = ["train", "--image", "a.nii.gz", "--labels", "l.nii.gz", "--out", "s.pt"]
    args = build_parser().parse_args([*argv, "--steps", "40", "--probe-head", "decoder"])
    assert training_flags(args) == {
        "mode": "linear",
        "seed": 0,
        "probe_steps": 40,
        "ft_steps": 40,
        "probe_head": "decoder",
    }
