"""What a planned sweep costs: training time and disk, estimated before anything is trained.

Time comes from this experiment's own measured epochs where it has finished runs of a network (a stage on a
side: pretraining on the source, transfer to the target): each run's mean epoch seconds against its training
items, fitted as a line where the runs differ in items (the validation pass costs the same at every fraction) and
as seconds per item where they do not; plus what a run spends beyond its epochs (the test pass). Where it has none,
a calibration on this machine times a few training and evaluation steps of the configured network on random inputs
of the configured size, on the configured device, precision and threads (the fastest of each, in a second or so:
another process's work only slows a step, and the plan says when the machine is busy), and scales them per item:
the epoch's training items, its batch-norm recalibration and its validation inputs, and the test inputs once.
Neither includes synthesis, store preparation, CKA or the report.

Disk is the stores (items x the bytes of one item, the registry's `item`) and each run's best.pt: the network's
state dict as it is saved (fp32 weights), counted from the model itself.

    >>> costs = estimate(config, stores, {"pretraining": [(("pretrain", "source"), 400)], ...})
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audio2image.config import PRETRAIN_DIR, Config
from audio2image.report.read import read_jsonl
from audio2image.training.cores import load_warning
from audio2image.training.files import peek_finished

CALIBRATION_ITEMS = 16  # the most items in a calibration batch: a big configured batch would take seconds a step
# timed steps per network and pass: at least the first, at most the second, as many as fit in the seconds, after a
# warm-up step (the first call builds the kernels, many times slower)
CALIBRATION_STEPS, CALIBRATION_SECONDS = (1, 10), 0.25
MEASURED, CALIBRATED = "measured epoch times", "calibration"
NOT_INCLUDED = "synthesis, store preparation, CKA analysis and the report"


@dataclass
class Network:
    """The network and data of one kind of run: a stage on a side, with its store (stores.planned_store)."""

    stage: str  # "pretrain" | "transfer"
    side: str
    store: dict
    epochs: int
    batch_size: int
    seconds: object = None  # (training items) -> one run's seconds, once estimated
    source: str = ""  # MEASURED or CALIBRATED
    checkpoint_bytes: int = 0  # one run's best.pt


def networks_of(config: Config, stores: dict, keys) -> dict[tuple, Network]:
    """The Network of each (stage, side) key, sized from its stage's settings."""
    return {(stage, side): Network(stage, side, stores[side], getattr(config, f"{stage}_epochs"),
                                   getattr(config, f"{stage}_batch_size")) for stage, side in set(keys)}


def estimate(config: Config, stores: dict, phases: dict[str, list[tuple]]) -> dict:
    """Time and disk of the runs to train, given per phase (pretraining, tuning, final: each waits for the one
    before) as ((stage, side), training items) pairs; `stores`: per side, stores.planned_store."""
    nets = networks_of(config, stores, [key for runs in phases.values() for key, _ in runs])
    for net in nets.values():
        _estimate_network(config, net)
    per_phase = {name: sum(nets[key].seconds(items) for key, items in runs) / max(1, min(config.parallel,
                                                                                           len(runs)))
                 for name, runs in phases.items()}
    sources = sorted({net.source for net in nets.values()})
    timing = {"seconds": sum(per_phase.values()), "phases": per_phase, "source": " and ".join(sources) or MEASURED,
             "networks": {f"{n.stage}:{n.side}": n.source for n in nets.values()}, "not_included": NOT_INCLUDED,
             "warning": load_warning() if CALIBRATED in sources else ""}
    checkpoints = sum(nets[key].checkpoint_bytes for runs in phases.values() for key, _ in runs)
    new_stores = {side: 0 if store["ready"] else store["bytes"] for side, store in stores.items()}
    disk = {"bytes": checkpoints + sum(new_stores.values()), "checkpoints": checkpoints, "stores": new_stores,
            "checkpoint_bytes": {f"{n.stage}:{n.side}": n.checkpoint_bytes for n in nets.values()},
            "not_included": "the raw (synthetic) datasets, metrics and reports"}
    return {"time": timing, "disk": disk}


def _estimate_network(config: Config, net: Network) -> None:
    """Build the network once: its best.pt size, and its time per run, measured or calibrated."""
    import torch

    from audio2image.sweep.executors import run_threads
    from audio2image.training.model import build_model
    from audio2image.training.saving import half_weights
    from audio2image.training.tasks import network_input

    inputs, backbone, _ = network_input(config, net.store["modality"], net.store["item"])
    model = build_model(net.store["labels"], 0, backbone)
    state = model.state_dict()
    kept = half_weights(state) if net.stage == "transfer" else state  # as saving.save_finished_best keeps it
    net.checkpoint_bytes = sum(t.numel() * t.element_size() for t in kept.values())
    points = measured_points(config, net.stage, net.side, net.store["modality"])
    if points:
        net.seconds, net.source = _fitted(points, net.epochs), MEASURED
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(run_threads(config))  # what each run will get
    try:
        per_item = calibrate(config, net, model, backbone)
    finally:
        torch.set_num_threads(threads)
    net.seconds, net.source = _calibrated(config, net, per_item, inputs.eval_crops), CALIBRATED


def measured_points(config: Config, stage: str, side: str, modality: str = "") -> list[dict]:
    """Per finished, completed run of this network in the experiment folder: its training items, mean epoch
    seconds (metrics.jsonl) and the seconds it spent beyond its epochs (result.json's wall time: the test). A
    transfer run counts for a target of its own modality (`modality`, where given): a study's targets differ."""
    if stage == "pretrain":
        folders = (config.experiment_dir / PRETRAIN_DIR).glob(f"{side}-seed*")
    else:
        folders = (config.experiment_dir / "transfer").glob("*")
    points = []
    for run_dir in sorted(folders):
        result = peek_finished(run_dir) or {}
        epochs = [line["seconds"] for line in read_jsonl(Path(run_dir) / "metrics.jsonl") if "seconds" in line]
        other = modality and (result.get("run") or {}).get("modality", modality) != modality
        if result.get("status") == "completed" and result.get("train_items") and epochs and not other:
            points.append({"items": int(result["train_items"]), "epoch": float(np.mean(epochs)),
                           "beyond": max(0.0, float(result.get("wall_seconds", 0.0)) - sum(epochs))})
    return points


def _fitted(points: list[dict], epochs: int):
    """A run's seconds from measured runs: epochs x (fixed + per item x items) + the time beyond epochs. The line is
    fitted where the runs differ in items; else (or where the fit is not sensible) seconds per item alone."""
    items = np.array([p["items"] for p in points], dtype=float)
    seconds = np.array([p["epoch"] for p in points])
    fixed, per_item = 0.0, float(np.mean(seconds / items))
    if len(set(items)) > 1:
        slope, intercept = np.polyfit(items, seconds, 1)
        if slope > 0 and intercept >= 0:
            fixed, per_item = float(intercept), float(slope)
    beyond = float(np.mean([p["beyond"] for p in points]))
    return lambda n: epochs * (fixed + per_item * n) + beyond


def _calibrated(config: Config, net: Network, per_item: dict, eval_crops: int):
    """A run's seconds from calibrated per-item times: per epoch its training items, the batch-norm
    recalibration's items (forward passes) and the validation inputs; the test inputs once."""
    splits = net.store["splits"]
    recalibrated = config.precise_bn_batches * net.batch_size

    def seconds(n: int) -> float:
        epoch = n * per_item["train"] + (min(n, recalibrated) + splits.get("valid", 0) * eval_crops) * per_item["eval"]
        return net.epochs * epoch + splits.get("test", 0) * eval_crops * per_item["eval"]

    return seconds


def calibrate(config: Config, net: Network, model, backbone) -> dict:
    """Seconds per item of a training step (forward, backward, optimiser step) and of an evaluation forward pass,
    on random inputs of the network's size, as a run trains them (device, bf16 autocast, channels-last)."""
    import torch

    from audio2image.training.engine import autocast, in_layout
    from audio2image.training.optim import build_optimizer
    from audio2image.training.run import resolve_device, stage_settings, uses_amp, uses_channels_last

    device = resolve_device(config.device)
    amp, channels_last = uses_amp(config, device), uses_channels_last(config, device)
    model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    optimizer = build_optimizer(model, stage_settings(config, net.stage))
    items = min(net.batch_size, CALIBRATION_ITEMS)
    generator = torch.Generator().manual_seed(0)
    x = in_layout(torch.randn(items, backbone.in_chans, *backbone.input_size, generator=generator).to(device),
                  channels_last)

    def train_step():
        with autocast(device, amp):
            loss = model(x).float().square().mean()  # the loss's own cost is nothing beside the network's
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    @torch.no_grad()
    def eval_step():
        with autocast(device, amp):
            model(x)

    model.train()
    train = _timed(train_step, device) / items
    model.eval()
    return {"train": train, "eval": _timed(eval_step, device) / items}


def _timed(step, device) -> float:
    """The fastest of a few timed calls of `step`, after a warm-up call: other work on the machine only ever slows a
    step, so the fastest is its own speed (a loaded machine is said apart: cores.load_warning)."""
    import torch

    def synchronise():  # CUDA runs asynchronously: wait for the step to end before reading the clock
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    step()
    synchronise()
    fewest, most = CALIBRATION_STEPS
    times, started = [], time.perf_counter()
    while len(times) < fewest or (len(times) < most and time.perf_counter() - started < CALIBRATION_SECONDS):
        tic = time.perf_counter()
        step()
        synchronise()
        times.append(time.perf_counter() - tic)
    return min(times)


def words(seconds: float) -> str:
    """'40 s', '3.2 min', '2.5 h'."""
    if not math.isfinite(seconds):
        return "unknown"
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def size_words(count: float) -> str:
    """'850 kB', '45 MB', '1.2 GB' (powers of 1000, as disk sizes are sold)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}" if count < 10 * scale else f"{count / scale:.0f} {unit}"
    return f"{count:.0f} B"
