"""Model files are untrusted: what they claim about architecture, weights and preprocessing
is checked before anything is built, and every bad file gives one sentence."""

import gzip
import math

import nibabel as nib
import numpy as np
import pytest
import torch

from napari_pix2rep.model import checkpoint
from napari_pix2rep.model.checkpoint import (
    BACKBONE,
    ModelFileError,
    atomic_torch_save,
    load_model_file,
)
from napari_pix2rep.model.nets.unet import UNet, UNetConfig, preset
from napari_pix2rep.model.preprocess import PreprocessConfig
from napari_pix2rep.model.segmenter import Segmenter, load_backbone


def _backbone_dict() -> dict:
    net = UNet(preset("tiny"))
    return {
        "format": BACKBONE,
        "version": 1,
        "arch": net.config.to_dict(),
        "preprocess": PreprocessConfig().to_dict(),
        "state_dict": net.state_dict(),
        "meta": {},
    }


def _segmenter_dict() -> dict:
    return Segmenter(UNet(preset("tiny"))).file_dict()


def _save(tmp_path, obj, name="model.pt"):
    return atomic_torch_save(obj, tmp_path / name)


def test_a_valid_file_loads(tmp_path):
    obj = load_model_file(_save(tmp_path, _backbone_dict()))
    assert obj["arch"] == preset("tiny").to_dict()
    seg = Segmenter.from_file(_save(tmp_path, _segmenter_dict(), "seg.pt"))
    assert seg.n_classes == 4


def test_an_arch_claiming_billions_of_parameters_is_refused_unbuilt(tmp_path, monkeypatch):
    """The file is a few hundred kilobytes; building its network would need 17 GB."""
    obj = _backbone_dict()
    huge = UNetConfig(base_channels=512, depth=8, max_channels=4096, out_channels=4096)
    obj["arch"] = huge.to_dict()
    path = _save(tmp_path, obj)
    assert path.stat().st_size < 1_000_000
    real = checkpoint.UNet

    def only_on_meta(config):
        # a regression must fail here, not allocate gigabytes
        assert torch.get_default_device().type == "meta", "the network was built for real"
        return real(config)

    monkeypatch.setattr(checkpoint, "UNet", only_on_meta)
    with pytest.raises(ModelFileError, match=r"model\.pt describes a U-Net of 4,275 M parameters"):
        load_model_file(path)
    with pytest.raises(ModelFileError, match="M parameters"):
        load_backbone(path)


@pytest.mark.parametrize(
    "change, words",
    [
        ({"depth": 1000}, "depth must be a whole number from 1 to 8"),
        ({"base_channels": 0}, "base_channels must be a whole number"),
        ({"out_channels": 10**9}, "out_channels must be a whole number"),
        ({"max_channels": "64"}, "max_channels must be a whole number"),
        ({"in_channels": True}, "in_channels must be a whole number"),
        ({"depth": 2.5}, "depth must be a whole number"),
        ({"norm": 3}, "Unknown normalisation"),
        ({"hypercolumn": 5}, "hypercolumn must be between"),
        ({"layers": 3}, "Unknown U-Net settings"),
    ],
)
def test_arch_values_are_bounded(tmp_path, change, words):
    obj = _backbone_dict()
    obj["arch"] = {**obj["arch"], **change}
    with pytest.raises(ModelFileError, match="describes an unknown architecture") as e:
        load_model_file(_save(tmp_path, obj))
    assert words in str(e.value)


def test_weights_are_checked_against_the_declared_arch(tmp_path):
    obj = _backbone_dict()
    obj["arch"]["out_channels"] = 32  # the weights give 16
    path = _save(tmp_path, obj)
    with pytest.raises(ModelFileError) as e:
        load_backbone(path)
    assert str(e.value) == (
        "model.pt was made for a different architecture than it declares, or is damaged "
        "(first mismatch: out.bias is (16,), the architecture needs (32,))."
    )
    obj["arch"] = preset("small").to_dict()  # a larger network
    with pytest.raises(ModelFileError, match=r"down\.0\.0\.weight is \(8, 1, 3, 3\), the arc"):
        load_model_file(_save(tmp_path, obj))


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda sd: sd.update({"out.weight": torch.full_like(sd["out.weight"], math.nan)}), "NaN"),
        (lambda sd: sd.update({"out.bias": sd["out.bias"].long()}), "torch.int64 values"),
        (lambda sd: sd.update({"out.bias": [1.0, 2.0]}), "not a dict of tensors"),
        (lambda sd: sd.update({"extra.weight": torch.zeros(1)}), "unexpected extra.weight"),
    ],
)
def test_damaged_weights(tmp_path, damage, words):
    obj = _backbone_dict()
    damage(obj["state_dict"])
    with pytest.raises(ModelFileError, match="model.pt") as e:
        load_model_file(_save(tmp_path, obj))
    assert words in str(e.value)


@pytest.mark.parametrize(
    "preprocess",
    [
        {"target_spacing": 0.0},
        {"target_spacing": -1.5},
        {"target_spacing": "1.5"},
        {"target_spacing": math.nan},
        {"target_spacing": 1e9},
        {"clip_low": 99.5, "clip_high": 0.5},
        {"clip_low": -5.0},
        {"clip_high": 1000.0},
        {"clip_high": "high"},
        {"clip_low": math.inf},
        {"resample": "cubic"},
    ],
)
def test_preprocessing_block_is_validated(tmp_path, preprocess):
    obj = _backbone_dict()
    obj["preprocess"] = {**obj["preprocess"], **preprocess}
    path = _save(tmp_path, obj)
    with pytest.raises(ModelFileError, match="model.pt has unusable preprocessing settings"):
        load_model_file(path)
    with pytest.raises(ModelFileError, match="unusable preprocessing"):
        load_backbone(path)


def test_missing_preprocessing_block(tmp_path):
    obj = _backbone_dict()
    del obj["preprocess"]
    with pytest.raises(ModelFileError, match="unusable preprocessing settings"):
        load_model_file(_save(tmp_path, obj))


def test_preprocess_config_refuses_bad_values_directly():
    with pytest.raises(ValueError, match="target_spacing"):
        PreprocessConfig(target_spacing=0)
    with pytest.raises(ValueError, match="clip percentiles"):
        PreprocessConfig(clip_low=60, clip_high=40)
    assert PreprocessConfig(target_spacing=None).target_spacing is None


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda o: o.update(classes="RV,LV"), "classes must be 2 to 255 names"),
        (lambda o: o.update(classes=["background"]), "classes must be 2 to 255 names"),
        (lambda o: o.update(classes=["background", 3]), "classes must be 2 to 255 names"),
        (lambda o: o["head"].update(type="mlp"), "unknown head type 'mlp'"),
        (lambda o: o.update(head=[]), "unknown head type None"),
        (lambda o: o.update(classes=["a", "b", "c"]), "(head) was made for a different"),
        (lambda o: o.update(version="1"), "invalid format version '1'"),
        (lambda o: o.update(meta=[1, 2]), "'meta' entry is not a dict"),
    ],
)
def test_damaged_segmenter_files(tmp_path, damage, words):
    obj = _segmenter_dict()
    damage(obj)
    path = _save(tmp_path, obj, "seg.pt")
    with pytest.raises(ModelFileError, match="seg.pt") as e:
        Segmenter.from_file(path)
    assert words in str(e.value)


def test_a_text_file_is_not_a_pytorch_model(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("hello\nthese are my notes, not a model\n")
    with pytest.raises(ModelFileError) as e:
        load_model_file(path)
    assert str(e.value) == (
        "notes.pt is not a napari-pix2rep model file: it is a text file, not a PyTorch model "
        "(expected a .pt written by pix2rep pretrain or train)."
    )


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_a_nifti_image_is_named_as_such(tmp_path, suffix):
    path = tmp_path / f"scan{suffix}"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 2), np.int16), np.eye(4)), str(path))
    with pytest.raises(ModelFileError, match="it is a NIfTI image, not a PyTorch model") as e:
        Segmenter.from_file(path)
    assert f"scan{suffix}" in str(e.value) and "pix2rep pretrain or train" in str(e.value)


@pytest.mark.parametrize(
    "content, words",
    [
        (b"\0" * 128 + b"DICM" + b"\x02\x00" * 40, "a DICOM image"),
        (gzip.compress(b"just some text"), "a gzip-compressed file"),
        (bytes(range(256)) * 4, "a file of another kind"),
    ],
    ids=["dicom", "gzip", "binary"],
)
def test_other_files_are_named(tmp_path, content, words):
    (tmp_path / "x.pt").write_bytes(content)
    with pytest.raises(ModelFileError, match=words):
        load_model_file(tmp_path / "x.pt")


def test_a_plain_state_dict_is_a_pytorch_file_of_another_program(tmp_path):
    path = _save(tmp_path, UNet(preset("tiny")).state_dict(), "weights.pt")
    with pytest.raises(ModelFileError, match="weights.pt is a PyTorch file but not a napari"):
        load_model_file(path)


def test_a_damaged_zip_is_one_sentence(tmp_path):
    good = _save(tmp_path, _backbone_dict()).read_bytes()
    (tmp_path / "cut.pt").write_bytes(good[: len(good) // 2])
    with pytest.raises(ModelFileError, match="cut.pt is not a napari-pix2rep model file or is"):
        load_model_file(tmp_path / "cut.pt")


def test_backbone_where_a_segmenter_is_expected_names_file_and_expectation(tmp_path):
    path = _save(tmp_path, _backbone_dict(), "bb.pt")
    with pytest.raises(ModelFileError, match="bb.pt is a pretrained backbone, not a segmenter"):
        Segmenter.from_file(path)


def _hypercolumn_dict() -> dict:
    torch.manual_seed(4)
    seg = Segmenter(UNet(preset("tiny")), head="hypercolumn")
    torch.nn.init.normal_(seg.head.conv.weight)
    return seg.file_dict()


def test_a_hypercolumn_head_file_round_trip(tmp_path):
    obj = _hypercolumn_dict()
    assert obj["head"]["type"] == "hypercolumn"
    assert obj["head"]["state_dict"]["conv.weight"].shape == (4, 120, 1, 1)
    seg = Segmenter.from_file(_save(tmp_path, obj, "seg.pt"))
    assert seg.head_type == "hypercolumn"
    torch.testing.assert_close(seg.head.conv.weight, obj["head"]["state_dict"]["conv.weight"])
    x = torch.randn(1, 1, 16, 24)
    ref = Segmenter(UNet(preset("tiny")), head="hypercolumn")
    ref.backbone.load_state_dict(obj["state_dict"])
    ref.head.load_state_dict(obj["head"]["state_dict"])
    with torch.no_grad():
        torch.testing.assert_close(seg.eval()(x), ref.eval()(x), atol=0, rtol=0)


def test_an_old_linear_head_file_loads_and_predicts_as_before(tmp_path):
    """A file as the linear-only versions wrote it: a 1x1 conv on the D-channel output."""
    torch.manual_seed(5)
    net = UNet(preset("tiny")).eval()
    weight, bias = torch.randn(4, 16, 1, 1), torch.randn(4)
    obj = {
        "format": checkpoint.SEGMENTER,
        "version": 1,
        "arch": net.config.to_dict(),
        "preprocess": PreprocessConfig().to_dict(),
        "classes": ["background", "RV", "MYO", "LV"],
        "state_dict": net.state_dict(),
        "head": {"type": "linear", "state_dict": {"conv.weight": weight, "conv.bias": bias}},
        "meta": {},
    }
    seg = Segmenter.from_file(_save(tmp_path, obj, "old.pt")).eval()
    assert seg.head_type == "linear"
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        expected = torch.nn.functional.conv2d(net(x), weight, bias)
        torch.testing.assert_close(seg(x), expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    "damage, words",
    [
        (
            lambda o: o["head"]["state_dict"].update(conv_weight=torch.zeros(4, 16, 1, 1)),
            "(head) was made for a different",
        ),
        (lambda o: o["head"].update(type="linear"), "(head) was made for a different"),
        (lambda o: o["head"].update(type=["hypercolumn"]), "unknown head type ['hypercolumn']"),
        (
            lambda o: o["head"]["state_dict"]["conv.weight"].fill_(math.nan),
            "conv.weight holds NaN",
        ),
        (lambda o: o["head"].update(state_dict=None), "weights are not a dict of tensors"),
    ],
    ids=["extra-key", "linear-shape", "type-not-a-name", "nan", "no-weights"],
)
def test_a_malformed_hypercolumn_head_is_refused(tmp_path, damage, words):
    obj = _hypercolumn_dict()
    damage(obj)
    path = _save(tmp_path, obj, "seg.pt")
    with pytest.raises(ModelFileError, match="seg.pt") as e:
        Segmenter.from_file(path)
    assert words in str(e.value)
    assert str(e.value).count(". ") == 0  # one sentence


def test_a_linear_head_of_hypercolumn_shape_is_refused(tmp_path):
    obj = _hypercolumn_dict()
    obj["head"]["type"] = "linear"
    with pytest.raises(ModelFileError, match=r"first mismatch: conv.weight is \(4, 120, 1, 1\)"):
        Segmenter.from_file(_save(tmp_path, obj, "seg.pt"))


def test_preprocessing_must_give_the_channels_the_network_reads(tmp_path):
    obj = _backbone_dict()
    obj["preprocess"] = {**obj["preprocess"], "context": 1}  # 3 channels for a 1-channel net
    with pytest.raises(ModelFileError, match="reads 1 input channel.*gives 3"):
        load_model_file(_save(tmp_path, obj))
