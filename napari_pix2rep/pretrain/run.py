"""Pix2Rep pretraining: the run around an objective (:mod:`napari_pix2rep.pretrain.objectives`).

:class:`Pretrainer` holds the run: Adam with warm-up and cosine decay, AMP and
channels_last on CUDA, progress, cooperative cancel, atomic checkpoints with everything
needed to resume the same trajectory, init from an existing backbone, and DDP under
``torchrun`` (each rank draws different slices; rank 0 alone writes files).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Generator
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from napari_pix2rep.core.progress import Progress, StopCheck, never, run_to_end
from napari_pix2rep.model.checkpoint import (
    BACKBONE,
    FORMAT_VERSION,
    ModelFileError,
    atomic_torch_save,
    build_backbone,
    library_versions,
    load_model_file,
)
from napari_pix2rep.model.device import release_memory, resolve_device
from napari_pix2rep.model.nets.unet import UNet, preset
from napari_pix2rep.pretrain import augment
from napari_pix2rep.pretrain.config import RESUMABLE, PretrainConfig, lr_at
from napari_pix2rep.pretrain.objectives import Pix2RepObjective, SimCLRObjective
from napari_pix2rep.pretrain.slices import SliceBank


def init_distributed(device: str) -> tuple[int, int, torch.device]:
    """Join the process group when run under ``torchrun`` (WORLD_SIZE > 1).

    Returns (rank, world size, this rank's device): NCCL with one GPU per rank on CUDA,
    gloo on CPU.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, resolve_device(device)
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), dev


class Pretrainer:
    """A Pix2Rep pretraining run that can be stepped, cancelled, saved and resumed.

    Parameters
    ----------
    bank : the slices to train on.
    config : run settings; when ``resume`` is given only its :data:`RESUMABLE` ones are
        used (``steps``, checkpoint and snapshot cadence), the rest come from the checkpoint.
    out : where checkpoints go (every ``checkpoint_every`` steps, every
        ``checkpoint_minutes`` and at the end).
    device : "auto", "cpu", "cuda", "mps" (under torchrun, each rank takes its GPU).
    init : a backbone or segmenter file whose backbone weights start the run.
    resume : a checkpoint written by a previous run, continued where it stopped.
    """

    def __init__(
        self,
        bank: SliceBank,
        config: PretrainConfig | None = None,
        out: str | os.PathLike | None = None,
        device: str = "auto",
        init: str | os.PathLike | None = None,
        resume: str | os.PathLike | None = None,
    ) -> None:
        self.bank = bank
        self.out = Path(out) if out is not None else None
        self.rank, self.world, self.device = init_distributed(device)
        state = None
        if resume is not None:
            state = load_model_file(resume, expect="backbone")
            if "resume" not in state:
                raise ModelFileError(f"{Path(resume).name} holds no training state to resume.")
            saved = PretrainConfig(**state["resume"]["config"])
            if config is not None:
                for name in RESUMABLE:
                    setattr(saved, name, getattr(config, name))
            config = saved
        self.config = config or PretrainConfig()
        cfg = self.config

        torch.manual_seed(cfg.seed)
        if state is not None:
            backbone = build_backbone(state, Path(resume).name)
        elif init is not None:
            backbone = build_backbone(load_model_file(init, "backbone"), Path(init).name)
            if backbone.config.in_channels != 1:
                raise ModelFileError(
                    f"{Path(init).name} reads neighbouring slices as extra channels; "
                    "pretraining starts from a one-slice backbone."
                )
        else:
            backbone = UNet(preset(cfg.preset))
        objective = SimCLRObjective if cfg.loss == "simclr" else Pix2RepObjective
        self.objective = objective(backbone, cfg).to(self.device)
        if cfg.channels_last:
            self.objective.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.AdamW(
            self.objective.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        self.use_amp = cfg.amp and self.device.type == "cuda"
        amp_dtype = torch.bfloat16 if self.use_amp and torch.cuda.is_bf16_supported() else None
        self.amp_dtype = amp_dtype or torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and amp_dtype is None)

        self.data_gen = torch.Generator().manual_seed(cfg.seed * 1000 + self.rank)
        self.aug_gen = torch.Generator(device=self.device).manual_seed(
            cfg.seed * 1000 + 500 + self.rank
        )
        self.step = 0
        self.saved_step = -1  # the step of the last checkpoint written to ``out``
        self.clock: Callable[[], float] = time.monotonic  # for time-based checkpoints
        self.loss_history: list[float] = []
        self.init_source = str(init) if init is not None else None
        if state is not None:
            self._restore(state)
        self.model = self.objective
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(
                self.objective, device_ids=ids, find_unused_parameters=cfg.loss == "simclr"
            )

    # -- state ---------------------------------------------------------------------------
    @property
    def backbone(self) -> UNet:
        return self.objective.backbone

    @property
    def effective_batch(self) -> int:
        return self.config.batch_size * self.world

    def _restore(self, state: dict) -> None:
        r = state["resume"]
        self.objective.projector.load_state_dict(r["projector"])
        self.optimizer.load_state_dict(r["optimizer"])
        if r.get("scaler"):
            self.scaler.load_state_dict(r["scaler"])
        self.step = int(r["step"])
        self.loss_history = [float(v) for v in state["meta"].get("loss_history", [])]
        self.init_source = state["meta"].get("init")
        data_states, aug_states = r["rng"]["data"], r["rng"]["aug"]
        if len(data_states) == self.world:
            self.data_gen.set_state(data_states[self.rank])
            if aug_states[self.rank].numel() == self.aug_gen.get_state().numel():
                self.aug_gen.set_state(aug_states[self.rank])

    def _gathered_rng(self) -> dict:
        data, aug = self.data_gen.get_state(), self.aug_gen.get_state()
        if self.world == 1:
            return {"data": [data], "aug": [aug]}
        out = {}
        for name, s in (("data", data), ("aug", aug)):
            parts = [torch.empty_like(s) for _ in range(self.world)]
            dist.all_gather_object(parts, s)
            out[name] = parts
        return out

    def state_dict(self) -> dict:
        """The model file: backbone weights, metadata and the state to resume from."""
        cfg = self.config
        rng = self._gathered_rng()
        return {
            "format": BACKBONE,
            "version": FORMAT_VERSION,
            "arch": self.backbone.config.to_dict(),
            "preprocess": cfg.preprocess.to_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in self.backbone.state_dict().items()},
            "meta": {
                "method": "simclr" if cfg.loss == "simclr" else f"pix2rep-{cfg.loss}",
                "steps": self.step,
                "effective_batch": self.effective_batch,
                "world_size": self.world,
                "n_slices": len(self.bank),
                "data": list(self.bank.sources[:2000]),
                "init": self.init_source,
                "loss_history": list(self.loss_history),
                "library": library_versions(),
                "created": time.strftime("%Y-%m-%d %H:%M:%S"),
            },
            "resume": {
                "step": self.step,
                "config": cfg.to_dict(),
                "projector": {
                    k: v.detach().cpu() for k, v in self.objective.projector.state_dict().items()
                },
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
                "rng": rng,
            },
        }

    def save(self, path: str | os.PathLike | None = None) -> Path | None:
        """Write the checkpoint atomically (rank 0 only; other ranks return None)."""
        path = Path(path) if path is not None else self.out
        if path is None:
            raise ValueError("No output path for the checkpoint.")
        state = self.state_dict()  # every rank joins the RNG gather
        written = atomic_torch_save(state, path) if self.rank == 0 else None
        if path == self.out:
            self.saved_step = self.step  # on every rank: they decide the final save alike
        return written

    def _checkpoint_due(self, last_save: float) -> bool:
        """Every ``checkpoint_every`` steps, or ``checkpoint_minutes`` after the last save
        (rank 0's clock decides for every rank, so all join the save's collectives)."""
        cfg = self.config
        if self.step % cfg.checkpoint_every == 0:
            return True
        if cfg.checkpoint_minutes <= 0:
            return False
        due = self.clock() - last_save >= 60 * cfg.checkpoint_minutes
        if self.world > 1:
            flag = torch.tensor([int(due)], device=self.device)
            dist.broadcast(flag, 0)
            due = bool(flag.item())
        return due

    # -- training ------------------------------------------------------------------------
    def _train_step(self) -> float:
        cfg = self.config
        dev = self.device
        x = self.bank.sample(cfg.batch_size, cfg.crop, self.data_gen)
        if dev.type == "cuda":
            x = x.pin_memory()
        x = x.to(dev, non_blocking=True)
        with torch.no_grad():
            v1 = augment.intensity_augment(x, cfg.augment, self.aug_gen)
            v2 = augment.intensity_augment(x, cfg.augment, self.aug_gen)
            theta = augment.random_affine(x.shape[0], cfg.augment, self.aug_gen, dev)
            v2w = augment.warp(v2, theta)
        if cfg.channels_last:
            v1 = v1.contiguous(memory_format=torch.channels_last)
            v2w = v2w.contiguous(memory_format=torch.channels_last)
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.step, cfg)
        amp = torch.autocast(dev.type, dtype=self.amp_dtype) if self.use_amp else nullcontext()
        with amp:
            loss = self.model(v1, v2w, theta, self.aug_gen)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        value = loss.detach()
        if self.world > 1:
            dist.all_reduce(value)
            value = value / self.world
        return float(value)

    def steps(self, should_stop: StopCheck = never) -> Generator[Progress, None, None]:
        """Train until ``config.steps`` (or ``should_stop()``), yielding after every step
        (``rate``: slices per second over all processes).

        Checkpoints go to ``out`` every ``checkpoint_every`` steps, at least every
        ``checkpoint_minutes`` (by :attr:`clock`) and when the loop ends, also when it is
        cancelled (at a step boundary, so the file is consistent).
        """
        cfg = self.config
        self.objective.train()
        rate = None
        consistent = False  # True when stopping at a step boundary (not mid-step)
        last_save = self.clock()
        try:
            while self.step < cfg.steps:
                if should_stop():
                    break
                t0 = time.perf_counter()
                loss = self._train_step()
                if not math.isfinite(loss):
                    raise FloatingPointError(
                        f"The loss became {loss} at step {self.step + 1}; lower the learning rate."
                    )
                self.step += 1
                self.loss_history.append(loss)
                dt = time.perf_counter() - t0
                rate = dt if rate is None else 0.9 * rate + 0.1 * dt
                if self.out is not None and self._checkpoint_due(last_save):
                    self.save()
                    last_save = self.clock()
                if (
                    self.out is not None
                    and cfg.snapshot_every
                    and self.step % cfg.snapshot_every == 0
                ):
                    self.save(
                        self.out.with_name(f"{self.out.name.split('.')[0]}_step{self.step}.pt")
                    )
                try:
                    yield Progress(
                        "pretrain",
                        self.step,
                        cfg.steps,
                        loss=loss,
                        eta_s=rate * (cfg.steps - self.step),
                        rate=self.effective_batch / rate,
                        lr=lr_at(self.step - 1, cfg),
                    )
                except GeneratorExit:
                    consistent = True
                    raise
            consistent = True
        finally:
            # A failed or interrupted step leaves the last checkpoint as it was.
            if consistent and self.out is not None and self.step != self.saved_step:
                self.save()
            release_memory(self.device)

    def close(self) -> None:
        """End a distributed run cleanly: wait until every rank (rank 0's checkpoint write
        included) is done, then tear the process group down; a no-op on one process.
        Leaving it to interpreter exit can abort a rank whose peer is still writing."""
        if self.world > 1 and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()

    def run(
        self,
        progress: Callable[[Progress], None] | None = None,
        should_stop: StopCheck = never,
    ) -> None:
        """Run :meth:`steps` to the end, calling ``progress`` after every step."""
        run_to_end(self.steps(should_stop), progress)
