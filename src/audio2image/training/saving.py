"""What a run writes as it trains: a metrics line per epoch, its best weights and a checkpoint to resume from.

Writes are atomic; a full disk is raised as the OSError it is; after SIGTERM (training/preemption.py) the run's
state at its last epoch end is written, so a resumed run gives the uninterrupted result.
"""
from __future__ import annotations

import copy
import errno
import json
import shutil
import time
from pathlib import Path

import torch

from audio2image.config import Config
from audio2image.prepare.store import Store
from audio2image.training.trackers import Trackers
from audio2image.util import atomic_path

# an epoch at least this long keeps its end's state in memory when no checkpoint was written then (the copy costs
# a few % of it), so that SIGTERM can stop the next epoch after any step; after shorter ones the epoch is finished
COPY_SECONDS = 2.0


class Saver:
    """What a run writes after each epoch: its metrics line; best.pt, the weights of the best epoch so far; and
    checkpoint.pt, everything to resume from. The best weights are copied in memory when they improve and written
    with the next checkpoint and after the last epoch; a checkpoint is written once `checkpoint_seconds` of
    training passed since the last one (0: after every epoch). Short epochs thus do not each write a whole
    checkpoint, which can take as long as a demo epoch's training (benchmarks/README.md: checkpoints), and an
    interrupted run loses at most that long.
    In that order: a checkpoint never counts an epoch whose metrics or best weights are not on disk."""

    def __init__(self, run_dir: Path, config: Config, store: Store, backbone: dict, trackers: Trackers | None = None):
        self.run_dir, self.config, self.store = run_dir, config, store
        self.trackers = trackers or Trackers()
        self.backbone = backbone  # what the weights were built for (training/backbone.py: Backbone.record)
        self.best: dict | None = None  # best weights not yet written
        self.last = time.perf_counter()
        # the state at the last epoch end, when it is not on disk (long epochs only, see COPY_SECONDS)
        self.boundary: dict | None = None
        # whether that state can be written at any moment: on disk, in memory, or no epoch ended yet (a fresh
        # run, or one resumed from its checkpoint: stopping then loses nothing that was written)
        self.can_stop_mid_epoch = True

    def record(self, line: dict, improved: bool, model, optimizer, schedule, state: dict, final: bool,
               stop: bool = False) -> None:
        """After an epoch: the metrics line (to metrics.jsonl and the trackers), then (when due, or `stop`: SIGTERM
        came) best.pt and checkpoint.pt."""
        _append_metrics(self.run_dir, line)
        self.trackers.log(line)
        if improved:
            self.best = {"model": _copy(model.state_dict()), "epoch": line["epoch"], "labels": self.store.labels,
                         "modality": self.store.modality, "backbone": self.backbone, "config": self.config.to_dict()}
        due = stop or time.perf_counter() - self.last >= self.config.checkpoint_seconds
        if final or due:
            self.write_best()
        checkpoint = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                      "schedule": schedule.state_dict(), "state": state}
        if due and not final:  # after the last epoch the run finishes instead: result.json replaces the checkpoint
            _save(self.run_dir / "checkpoint.pt", checkpoint)
            self.last = time.perf_counter()
        self.boundary, self.can_stop_mid_epoch = None, due and not final
        if not due and not final and line["seconds"] >= COPY_SECONDS:
            self.boundary = {**copy.deepcopy({k: v for k, v in checkpoint.items() if k != "model"}),
                             "model": _copy(checkpoint["model"])}
            self.can_stop_mid_epoch = True

    def stop_mid_epoch(self) -> None:
        """SIGTERM in an epoch (`can_stop_mid_epoch`): write the last epoch end's state; the epoch is redone."""
        self.write_best()
        if self.boundary is not None:
            _save(self.run_dir / "checkpoint.pt", self.boundary)

    def write_best(self) -> None:
        if self.best is not None:
            _save(self.run_dir / "best.pt", self.best)
            self.best = None


def _append_metrics(run_dir: Path, line: dict) -> None:
    with open(run_dir / "metrics.jsonl", "a") as handle:
        handle.write(json.dumps(line) + "\n")


FULL_DISK_BYTES = 256 * 2**20  # less free than this after torch's zip writer failed: the disk was full


def _save(path: Path, value: dict) -> None:
    """torch.save, atomically. A full disk surfaces from torch's zip writer as a RuntimeError ("enforce fail at
    inline_container.cc", no errno); with the disk (nearly) full it is raised as the OSError it is, naming the
    file, so the CLI says it in one line and the run resumes from its last checkpoint once there is room."""
    with atomic_path(path) as tmp:
        try:
            torch.save(value, tmp)
        except RuntimeError as error:
            full = "No space left" in str(error) or ("inline_container" in str(error)
                                                     and shutil.disk_usage(path.parent).free < FULL_DISK_BYTES)
            if not full:
                raise
            raise OSError(errno.ENOSPC, "No space left on device", str(path)) from error


HALF_MAX = torch.finfo(torch.float16).max


def half_weights(state: dict) -> dict:
    """A state dict to keep, at half the size: its float32 weight matrices and kernels (two or more dimensions,
    nearly all the bytes) in float16; a tensor with a value beyond float16's range, and the vectors (biases, norm
    scales, running statistics: few bytes, and where the extreme values are) as they are. `files.read_checkpoint`
    gives them back as float32."""
    def halved(value):
        fits = (isinstance(value, torch.Tensor) and value.dtype == torch.float32 and value.dim() >= 2
                and value.numel() > 0 and bool(torch.isfinite(value).all()) and value.abs().max() <= HALF_MAX)
        return value.half() if fits else value

    return {key: halved(value) for key, value in state.items()}


def save_finished_best(run_dir: Path, best: dict) -> None:
    """A finished transfer run's best.pt, rewritten with `half_weights`: only the analyses read it again, and every
    transfer run keeps one (the bulk of an experiment's disk). Pretraining runs keep float32: they are the inits of
    others."""
    _save(Path(run_dir) / "best.pt", {**best, "model": half_weights(best["model"])})


def _copy(state: dict) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}
