"""One training run, for either stage: pretraining on a source store or transfer to a target store.

A run folder holds everything a run produces and everything needed to resume it:

    config.yaml       the resolved config
    run.json          the run's identity (stage, dataset, fraction, init, seed, freeze, run_id)
    metrics.jsonl     one JSON line per epoch
    checkpoint.pt     model + optimiser + scheduler + epoch, replaced atomically after every epoch
    best.pt           the weights of the epoch with the best validation score (the one a transfer loads); a
                      finished transfer run keeps its weight matrices in float16 (saving.half_weights)
    result.json       written last: status, best epoch, validation and test metrics

Running the same run again continues from checkpoint.pt, or returns result.json if the run is finished.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from audio2image.config import Config, save_config
from audio2image.config_checks import check_backbone
from audio2image.prepare.store import Store
from audio2image.training import distributed
from audio2image.training.cores import CoreShare
from audio2image.training.engine import evaluate, recalibrate_batchnorm, train_one_epoch
from audio2image.training.files import finished_result, read_checkpoint, set_aside, usable_checkpoint
from audio2image.training.preemption import Preempted, hand_over, handling, requested
from audio2image.training.reproducibility import deterministic, fits_threads, provenance
from audio2image.training.saving import Saver, save_finished_best
from audio2image.training.loader import Loader, RecycledMemory, batch_memory, epoch_generator
from audio2image.training.inits import initialise
from audio2image.training.model import build_model, freeze
from audio2image.training.optim import build_optimizer, build_schedule
from audio2image.training.tasks import Task, build_task, fraction_rows
from audio2image.training.trackers import tracking
from audio2image.util import atomic_write_text, batch_bar, file_lock, log, write_json


@dataclass
class RunSpec:
    """What distinguishes one run: its stage and data, and its fraction / init / seed / freeze."""

    stage: str  # "pretrain" or "transfer"
    store: Path
    fraction: float = 1.0
    init: str = "random"
    seed: int = 0
    freeze: str = "none"
    run_id: str = ""
    extra: dict = field(default_factory=dict)

    def identity(self, store: Store) -> dict:
        return {"stage": self.stage, "dataset": store.manifest["dataset"], "modality": store.modality,
                "fraction": self.fraction, "init": self.init, "seed": self.seed, "freeze": self.freeze,
                "run_id": self.run_id, **self.extra}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", distributed.local_rank())
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda":
        return torch.device("cuda", distributed.local_rank())
    return torch.device(name)


def uses_channels_last(config: Config, device: torch.device) -> bool:
    """NHWC layout for the model and its inputs: on CUDA (tensor cores), and on the CPU too, where oneDNN's
    convolutions run ResNet-18's training and evaluation steps faster so (benchmarks/README.md: channels_last).
    Not on MPS, where it is untested."""
    return config.channels_last and device.type in ("cuda", "cpu")


CPUINFO = Path("/proc/cpuinfo")


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively: AMX tiles or AVX-512 BF16 (oneDNN's bf16 convolutions then run
    ResNet-18 training steps faster than fp32, benchmarks/README.md: train_epoch.py; without them bf16 is emulated
    and slower). Read from
    torch's own CPU checks, or where this torch lacks them from the CPU flags in /proc/cpuinfo."""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    if all(check is not None for check in checks):
        return any(check() for check in checks)
    try:
        flags = CPUINFO.read_text().split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def uses_amp(config: Config, device: torch.device) -> bool:
    """bf16 autocast (config `amp`): on CUDA, and on a CPU with native bf16; never on MPS (untested there)."""
    return config.amp and (device.type == "cuda" or (device.type == "cpu" and native_bf16()))


def stage_settings(config: Config, stage: str) -> dict:
    """The `<stage>_*` keys without their prefix: epochs, batch_size, optimizer, lr, ..."""
    prefix = f"{stage}_"
    return {k[len(prefix):]: v for k, v in config.to_dict().items() if k.startswith(prefix)}


LOCK = ".lock"  # in the run folder: held by the process that trains the run
# DDP: steps between the processes' joint SIGTERM checks (each one all-reduce; Slurm grants ~30 s or more)
DDP_STOP_EVERY = 20


def train_run(config: Config, spec: RunSpec, run_dir: Path, wait: bool = True) -> dict:
    """Run (or resume, or just read) one training run; returns its result.json content.

    One owner per run: the training process holds RUN_DIR/.lock (util.file_lock), so sweeps in several processes
    or on several machines sharing the folder train each run once; another caller waits for the owner and reads
    its result (wait=False: raises util.Busy at once, to take another run first)."""
    run_dir = Path(run_dir)
    finished = finished_result(run_dir)  # a damaged result or best.pt is set aside and the run redone
    if finished is not None:
        return finished
    if not distributed.is_main():  # DDP: the main process owns the run for all of them
        with handling(), deterministic(config):  # every process stops with it on SIGTERM (distributed.agreed_stop)
            return _train(config, spec, run_dir)
    with file_lock(run_dir / LOCK, wait=wait), handling(), deterministic(config):  # SIGTERM: see preemption.py
        finished = finished_result(run_dir)  # the owner we waited for may have finished it
        return finished if finished is not None else _train(config, spec, run_dir)


@dataclass
class _Training:
    """Everything one run's epochs work on, set up by `_setup` (`compiled`: the model as trained, wrapped for DDP
    and torch.compile where they apply; `model`: its plain weights, which checkpoints hold)."""

    config: Config
    spec: RunSpec
    run_dir: Path
    task: Task
    settings: dict
    device: torch.device
    is_main: bool
    model: torch.nn.Module
    compiled: torch.nn.Module
    loaded: dict  # what the init loaded (inits.initialise)
    loaders: RunLoaders
    optimizer: torch.optim.Optimizer
    schedule: object
    state: dict  # the loop's: last epoch, best epoch and score, seconds
    amp: bool
    channels_last: bool
    started: float
    share: CoreShare  # the thread count fitted to the cores other processes leave free

    @property
    def store(self) -> Store:
        return self.task.store

    @property
    def rows(self) -> np.ndarray:  # the training rows: the run's fraction of the train split
        return self.loaders.rows


def _train(config: Config, spec: RunSpec, run_dir: Path) -> dict:
    t = _setup(config, spec, run_dir)
    with tracking(t) as trackers:  # config `trackers` (TensorBoard, MLflow, W&B): fed each epoch and the result
        saver = Saver(run_dir, config, t.store, t.task.backbone.record(t.model), trackers)
        for epoch in range(t.state["epoch"] + 1, t.settings["epochs"] + 1):
            diverged = _epoch(t, saver, epoch)
            if diverged is not None:
                return trackers.finish(diverged)
        return trackers.finish(_test_and_record(t))


def _setup(config: Config, spec: RunSpec, run_dir: Path) -> _Training:
    """The run's data, model (initialised, frozen, on its device, resumed from checkpoint.pt) and optimiser."""
    started = time.perf_counter()
    check_backbone(config)  # a name timm knows, @K and stages:K within its stages (cached after the first run)
    store = Store(spec.store)
    task = build_task(store, config, spec.stage)
    settings = stage_settings(config, spec.stage)
    device = resolve_device(config.device)
    is_main = distributed.is_main()
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / "config.yaml")
        write_json(run_dir / "run.json", spec.identity(store))
    model = build_model(task.num_outputs, spec.seed, task.backbone)
    loaded = initialise(model, spec.init, seed=spec.seed, imagenet_weights=config.imagenet_weights,
                        backbone=task.backbone)
    frozen = freeze(model, spec.freeze)
    channels_last = uses_channels_last(config, device)
    model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    rows = fraction_rows(task, spec.fraction, spec.seed)
    loaders = RunLoaders(task, rows, settings, spec.seed, device, config.precise_bn_batches)
    optimizer = build_optimizer(model, settings)
    schedule = build_schedule(optimizer, settings, len(loaders.train(0)), spec.stage)
    state = _resume(run_dir, model, optimizer, schedule, device)
    wrapped = distributed.wrap(model, device)
    amp = uses_amp(config, device)
    log(f"{spec.stage} {run_dir.name}: {store.manifest['dataset']} {task.kind.name}, {len(rows)} training items, "
        f"init {spec.init}, freeze {spec.freeze} ({', '.join(frozen) or 'nothing'}), device {device}"
        + (" (bf16)" if amp else ""))
    share = CoreShare((config.threads or torch.get_num_threads()) if fits_threads(config, device) else 0)
    return _Training(config, spec, run_dir, task, settings, device, is_main, model,
                     torch.compile(wrapped) if config.compile else wrapped, loaded, loaders, optimizer, schedule,
                     state, amp, channels_last, started, share)


def _epoch(t: _Training, saver: Saver, epoch: int) -> dict | None:
    """Train, validate and record one epoch; the run's result if it diverged. On SIGTERM: Preempted, the
    checkpoint written (mid-epoch where the saver can, else after the epoch)."""
    tic = time.perf_counter()
    step = t.schedule.step if t.schedule.per_step else None
    precision = {"amp": t.amp, "channels_last": t.channels_last}
    loader = t.loaders.train(epoch)
    # one bar: runs trained side by side (parallel) or by DDP's other processes would draw over each other's line
    shown = t.config.progress and t.is_main and t.config.parallel <= 1
    with batch_bar(loader, total=len(loader), desc=f"epoch {epoch}/{t.settings['epochs']}", enabled=shown) as batches:
        train = train_one_epoch(t.compiled, t.task, t.share.paced(batches), t.optimizer, t.device,
                                generator=epoch_generator(t.spec.seed, epoch, stream=1), step_scheduler=step,
                                stop=_stop_check(saver, t.device), **precision)
    if train.get("stopped"):
        if t.is_main:
            saver.stop_mid_epoch()
        _preempted(f"{t.run_dir.name}: SIGTERM in epoch {epoch}; the state after epoch {t.state['epoch']} is "
                   "written")
    if not math.isfinite(train["train_loss"]):
        return _finish_diverged(t.run_dir, t.spec, t.store, epoch, t.started, t.is_main)
    if t.config.precise_bn_batches:
        recalibrate_batchnorm(t.compiled, t.task, t.loaders.batchnorm(epoch), t.device, **precision)
    val = evaluate(t.compiled, t.task, t.share.paced(t.loaders.eval("valid")), t.device, **precision)
    if not t.schedule.per_step:
        t.schedule.step_epoch(val["loss"])
    line = {"epoch": epoch, "lr": t.optimizer.param_groups[0]["lr"], **train,
            **{f"val_{k}": v for k, v in val.items()}, "seconds": round(time.perf_counter() - tic, 3)}
    metric = t.task.selection_metric
    improved = _update_state(t.state, epoch, val, val[metric], line["seconds"])
    # one answer for the checkpoint and the exit, and the same on every process
    final, stopping = epoch == t.settings["epochs"], distributed.agreed_stop(requested(), True, t.device)
    if t.is_main:
        saver.record(line, improved, t.model, t.optimizer, t.schedule, t.state, final=final, stop=stopping)
    log(f"  epoch {epoch}/{t.settings['epochs']}: train loss {train['train_loss']:.4f}, val {metric} "
        f"{val[metric]:.4f}, {line['seconds']:.1f} s")
    if stopping and not final:  # SIGTERM came in a short epoch: finished, and its checkpoint written
        _preempted(f"{t.run_dir.name}: SIGTERM; stopped after epoch {epoch}, its checkpoint written")
    return None


def _test_and_record(t: _Training) -> dict:
    """Test once, with the weights chosen on validation; write result.json (the run is then finished)."""
    tic = time.perf_counter()
    best = _load_best(t.run_dir, t.model, t.is_main)
    test = evaluate(t.compiled, t.task, t.share.paced(t.loaders.eval("test")), t.device, amp=t.amp,
                    channels_last=t.channels_last)
    result = {"status": "completed", "message": "", "task": t.task.kind.name,
              "selection_metric": t.task.kind.validation_metric, "best_epoch": t.state["best_epoch"],
              "epochs_run": t.state["epoch"], "train_items": int(len(t.rows)),
              "val_items": len(t.store.split("valid")), "val": t.state["best_val"],
              "test": test, "init": t.loaded, "precision": "bf16" if t.amp else "fp32",
              **t.share.record(), **provenance(t.config), "host": socket.gethostname(), "pid": os.getpid(),
              "wall_seconds": round(t.state.get("seconds", 0.0) + time.perf_counter() - tic, 3),
              "run": t.spec.identity(t.store)}
    if t.is_main:
        write_json(t.run_dir / "result.json", result)
        (t.run_dir / "checkpoint.pt").unlink(missing_ok=True)  # finished: best.pt and result.json are what stays
        if t.spec.stage == "transfer":  # after the test, which used the float32 weights chosen on validation
            save_finished_best(t.run_dir, best)
    return result


def _update_state(state: dict, epoch: int, val: dict, score: float, seconds: float) -> bool:
    """Count the epoch in the run's state; True when it is the best so far on validation."""
    improved = state["best_epoch"] == 0 or (math.isfinite(score) and score > state["best_score"])
    if improved:
        state.update(best_epoch=epoch, best_score=score, best_val=val)
    state["epoch"] = epoch
    state["seconds"] = state.get("seconds", 0.0) + seconds
    return improved


def _stop_check(saver: Saver, device: torch.device):
    """The engine's `stop`, asked after each step: stop mid-epoch on SIGTERM where the saver holds the last
    epoch end's state. Under DDP every process asks every DDP_STOP_EVERY steps, together (a collective: one
    process stopping while another steps on would hang both), so a signal waits at most that many steps."""
    every = DDP_STOP_EVERY if distributed.launched() else 1
    steps = itertools.count(1)
    return lambda: next(steps) % every == 0 and distributed.agreed_stop(requested(), saver.can_stop_mid_epoch,
                                                                         device)


def _preempted(message: str) -> None:
    log(f"{message}; run the same command again (or requeue the job) to resume")
    distributed.barrier()  # DDP: nobody exits (and has torchrun stop the rest) before process 0 has written
    hand_over()  # under submitit: requeued here, and the process exits
    raise Preempted(message)


def _load_best(run_dir: Path, model, is_main: bool) -> dict:
    """The weights chosen on validation, read by the main process and shared with the others (DDP); returns best.pt's
    content."""
    best = distributed.broadcast_object(read_checkpoint(run_dir / "best.pt") if is_main else None)
    model.load_state_dict(best["model"])
    return best


@dataclass
class RunLoaders:
    """The loaders of one run. They share one RecycledMemory: each epoch gathers its batches into the memory of
    the previous epochs' instead of new memory (which costs page faults on the CPU)."""

    task: Task
    rows: np.ndarray  # the training rows: the run's fraction of the train split
    settings: dict
    seed: int
    device: torch.device
    precise_bn_batches: int
    memory: RecycledMemory = field(default_factory=batch_memory)

    def train(self, epoch: int) -> Loader:
        rank, world = distributed.rank_and_world()
        return Loader(self.task.store.split("train"), self.rows, self.settings["batch_size"], shuffle=True,
                      crop_frames=self.task.crop_frames, generator=epoch_generator(self.seed, epoch),
                      pin_memory=self.device.type == "cuda", shard=(rank, world), memory=self.memory)

    def batchnorm(self, epoch: int) -> Loader:
        """Training rows, in a seeded order, as whole items (the evaluation transform crops them itself)."""
        generator = epoch_generator(self.seed, epoch, stream=2)
        order = self.rows[torch.randperm(len(self.rows), generator=generator).numpy()]
        order = order[:self.precise_bn_batches * self.settings["batch_size"]]
        return Loader(self.task.store.split("train"), order, self.settings["batch_size"], shuffle=False,
                      memory=self.memory)

    def eval(self, split: str) -> Loader:
        """A split in batches of EVAL_SCALE training batches' worth of network inputs (crops counted): evaluation
        keeps no activations for a backward pass, and fewer, larger batches evaluate faster."""
        data = self.task.store.split(split)
        items = max(1, self.settings["batch_size"] * EVAL_SCALE // self.task.inputs.eval_crops)
        return Loader(data, torch.arange(len(data)).numpy(), items, shuffle=False,
                      pin_memory=self.device.type == "cuda", memory=self.memory)


EVAL_SCALE = 4


def _resume(run_dir: Path, model, optimizer, schedule, device) -> dict:
    """Load checkpoint.pt if there is one; keep metrics.jsonl consistent with it. Returns the loop state."""
    state = {"epoch": 0, "best_epoch": 0, "best_score": -math.inf, "best_val": {}}
    path = run_dir / "checkpoint.pt"
    if usable_checkpoint(run_dir):
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            schedule.load_state_dict(checkpoint["schedule"])
            state = checkpoint["state"]
            log(f"  resuming {run_dir.name} after epoch {state['epoch']}")
        except Exception as error:  # noqa: BLE001 - whatever is wrong inside it, the run can start over
            set_aside(path, f"does not load ({type(error).__name__}); the run starts over")
            state = {"epoch": 0, "best_epoch": 0, "best_score": -math.inf, "best_val": {}}
    if distributed.is_main():
        _truncate_metrics(run_dir / "metrics.jsonl", state["epoch"])
    return state


def _truncate_metrics(path: Path, last_epoch: int) -> None:
    """Keep the lines of epochs up to the checkpoint; drop later or torn lines from an interrupted run."""
    if not path.exists():
        return
    kept = []
    for text in path.read_text().splitlines():
        try:
            line = json.loads(text)
        except json.JSONDecodeError:
            continue
        if line.get("epoch", 0) <= last_epoch:
            kept.append(text)
    atomic_write_text(path, "".join(t + "\n" for t in kept))


def _finish_diverged(run_dir, spec, store, epoch, started, is_main) -> dict:
    message = (f"the training loss became non-finite in epoch {epoch}; the run stopped. Try a lower learning "
               f"rate ({spec.stage}_lr=...)")
    result = {"status": "diverged", "message": message, "best_epoch": None, "epochs_run": epoch - 1,
              "val": {}, "test": {}, "wall_seconds": round(time.perf_counter() - started, 3),
              "run": spec.identity(store)}
    log(f"  {run_dir.name}: {message}")
    if is_main:
        write_json(run_dir / "result.json", result)
        (run_dir / "checkpoint.pt").unlink(missing_ok=True)
    return result
