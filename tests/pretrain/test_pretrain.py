"""Pretraining engine: trajectory-exact resume, cancel, checkpoints, init, DDP."""

import os
import subprocess
import sys

import pytest
import torch

from napari_pix2rep.evaluation.phantom import make_phantom, write_phantom_dataset
from napari_pix2rep.model.checkpoint import (
    atomic_torch_save,
    build_backbone,
    default_backbone_path,
    load_model_file,
    shipped_copy,
)
from napari_pix2rep.model.preprocess import PreprocessConfig
from napari_pix2rep.pretrain.config import PretrainConfig
from napari_pix2rep.pretrain.run import Pretrainer
from napari_pix2rep.pretrain.slices import SliceBank


@pytest.fixture(scope="module")
def bank():
    vols = [make_phantom(n_slices=4, size=(64, 64), seed=s) for s in range(2)]
    return SliceBank.from_arrays([(v.image, v.spacing) for v in vols], PreprocessConfig())


def _cfg(**kw):
    base = dict(preset="tiny", steps=6, batch_size=4, crop=32, checkpoint_every=3, n_pixels=64)
    base.update(kw)
    return PretrainConfig(**base)


@pytest.mark.parametrize("loss", ["infonce", "barlow"])
def test_resume_continues_the_same_trajectory(bank, tmp_path, loss):
    straight = Pretrainer(bank, _cfg(loss=loss), out=tmp_path / "a.pt", device="cpu")
    straight.run()
    reference = straight.loss_history

    first = Pretrainer(bank, _cfg(loss=loss), out=tmp_path / "b.pt", device="cpu")
    first.run(should_stop=lambda: first.step >= 3)
    assert load_model_file(tmp_path / "b.pt")["meta"]["steps"] == 3

    resumed = Pretrainer(
        bank, _cfg(loss=loss), out=tmp_path / "b.pt", device="cpu", resume=tmp_path / "b.pt"
    )
    assert resumed.step == 3
    resumed.run()
    assert resumed.loss_history[:3] == reference[:3]
    torch.testing.assert_close(
        torch.tensor(resumed.loss_history[3:]), torch.tensor(reference[3:]), rtol=1e-5, atol=1e-6
    )
    a = straight.backbone.state_dict()
    b = resumed.backbone.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


def test_loss_falls_and_checkpoint_reloads_with_weights_only(bank, tmp_path):
    t = Pretrainer(bank, _cfg(steps=40, checkpoint_every=20), out=tmp_path / "m.pt", device="cpu")
    t.run()
    h = t.loss_history
    assert sum(h[-10:]) / 10 < sum(h[:10]) / 10
    obj = torch.load(tmp_path / "m.pt", weights_only=True)
    assert obj["format"] == "napari-pix2rep/backbone" and obj["meta"]["steps"] == 40
    assert len(obj["meta"]["loss_history"]) == 40


def test_a_failing_step_keeps_the_last_checkpoint(bank, tmp_path, monkeypatch):
    out = tmp_path / "m.pt"
    t = Pretrainer(bank, _cfg(steps=10), out=out, device="cpu")
    real = t._train_step

    def flaky():
        if t.step == 4:
            raise FloatingPointError("boom")
        return real()

    monkeypatch.setattr(t, "_train_step", flaky)
    with pytest.raises(FloatingPointError):
        t.run()
    assert load_model_file(out)["meta"]["steps"] == 3
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_init_starts_from_the_given_weights(bank, tmp_path):
    src = Pretrainer(bank, _cfg(steps=2), out=tmp_path / "src.pt", device="cpu")
    src.run()
    t = Pretrainer(bank, _cfg(steps=1, seed=5), device="cpu", init=tmp_path / "src.pt")
    for k, v in src.backbone.state_dict().items():
        torch.testing.assert_close(t.backbone.state_dict()[k], v)
    assert t.step == 0


def test_resume_needs_training_state(bank, tmp_path):
    from napari_pix2rep.model.checkpoint import ModelFileError

    t = Pretrainer(bank, _cfg(steps=1), device="cpu")
    state = t.state_dict()
    del state["resume"]
    atomic_torch_save(state, tmp_path / "shipped.pt")
    with pytest.raises(ModelFileError, match="no training state"):
        Pretrainer(bank, _cfg(), device="cpu", resume=tmp_path / "shipped.pt")


def _gloo_unavailable(tmp_path, env) -> str | None:
    """Why two local gloo processes cannot start here (a sandbox limit), else None."""
    probe = tmp_path / "probe.py"
    probe.write_text("import torch.distributed as d\nd.init_process_group('gloo')\nd.barrier()\n")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += ["--nproc_per_node", "2", str(probe)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    if run.returncode == 0:
        return None
    lines = [ln for ln in run.stderr.splitlines() if "rror" in ln or "what()" in ln]
    return (lines or [f"exit status {run.returncode}"])[0]


@pytest.mark.slow
def test_ddp_with_two_cpu_processes(tmp_path):
    data = tmp_path / "data"
    write_phantom_dataset(data, n_cases=2, n_slices=4, size=(64, 64), n_frames=4)
    out = tmp_path / "ddp.pt"
    # Gloo binds to the loopback interface: CI sandboxes may not resolve their hostname.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    reason = _gloo_unavailable(tmp_path, env)
    if reason:
        pytest.skip(f"torch.distributed (gloo) cannot start two processes here: {reason}")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "napari_pix2rep.cli",
        "pretrain",
        str(data),
        "--exclude",
        "*_gt*",
        "--preset",
        "tiny",
        "--steps",
        "3",
        "--batch-size",
        "2",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr[:3000] + "\n...\n" + run.stderr[-1500:]
    assert "x2, effective batch 4 (2 x 2)" in run.stdout
    obj = load_model_file(out)
    assert obj["meta"]["world_size"] == 2 and obj["meta"]["effective_batch"] == 4
    data_states = obj["resume"]["rng"]["data"]
    assert len(data_states) == 2 and not torch.equal(data_states[0], data_states[1])


def test_shipped_copy_is_small_and_keeps_the_features(tiny_backbone_file, tmp_path):
    obj = load_model_file(tiny_backbone_file)
    out = atomic_torch_save(shipped_copy(obj), tmp_path / "shipped.pt")
    assert out.stat().st_size < tiny_backbone_file.stat().st_size / 2
    small = load_model_file(out)
    assert "resume" not in small and small["meta"]["weights_dtype"] == "float16"
    full, half = build_backbone(obj).eval(), build_backbone(small).eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        a, b = full(x), half(x)
    assert all(v.dtype != torch.float16 for v in half.state_dict().values())
    assert torch.allclose(a, b, atol=2e-2 * a.abs().max().item())


def test_the_shipped_backbone_loads():
    path = default_backbone_path()
    obj = load_model_file(path, expect="backbone")
    assert "resume" not in obj and obj["meta"]["steps"] >= 10000
    net = build_backbone(obj).eval()
    with torch.no_grad():
        f = net(torch.randn(1, 1, 64, 64))
    assert f.shape == (1, net.config.out_channels, 64, 64) and torch.isfinite(f).all()


def test_resume_takes_the_trajectory_from_the_file_and_the_cadence_from_the_caller(bank, tmp_path):
    from napari_pix2rep.pretrain.config import resume_conflicts

    out = tmp_path / "r.pt"
    Pretrainer(bank, _cfg(steps=2, lr=1e-3), out=out, device="cpu").run()
    asked = _cfg(steps=4, lr=5e-4, checkpoint_every=1, checkpoint_minutes=0.5, snapshot_every=2)
    resumed = Pretrainer(bank, asked, out=out, device="cpu", resume=out)
    cfg = resumed.config
    assert cfg.lr == 1e-3 and cfg.steps == 4  # the run's lr, the caller's end
    assert (cfg.checkpoint_every, cfg.checkpoint_minutes, cfg.snapshot_every) == (1, 0.5, 2)
    saved = PretrainConfig(**load_model_file(out)["resume"]["config"])
    assert resume_conflicts(saved, {"lr": 5e-4, "seed": None, "batch_size": 4}) == {
        "lr": (5e-4, 1e-3)
    }
