"""One training loop for every task: `train_one_epoch` and `evaluate`, plain functions.

A task (see tasks.py) says how to turn raw batches into model input, which loss to use and which metrics to
report; these functions know nothing of audio or images.
"""
from __future__ import annotations

import contextlib
import math

import torch

from audio2image.training.model import train_mode


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA and the CPU when `enabled` (see run.uses_amp for where it is); losses and metrics
    are taken in fp32 from the logits."""
    kind = torch.device(device).type
    if enabled and kind in ("cuda", "cpu"):
        return torch.autocast(kind, dtype=torch.bfloat16)
    return contextlib.nullcontext()


DIVERGENCE_CHECK_STEPS = 50


def in_layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """x in the memory layout the model runs in (a no-op when it is already): inputs come in either, e.g. the CPU
    image augmentation writes channels-last, the evaluation transform channels-first."""
    return x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def train_one_epoch(model, task, loader, optimizer, device, *, generator, step_scheduler=None,
                    amp: bool = False, channels_last: bool = False, stop=None) -> dict:
    """One pass over `loader`. Returns train_loss (and train_<accuracy> where the task kind counts one, e.g.
    train_top1 for classification), or loss nan on divergence; {"stopped": True} when `stop()` says so after a step
    (SIGTERM: training/preemption.py)."""
    train_mode(model)
    hits = task.kind.train_hits
    total_loss = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.float64)
    seen = 0
    # Checking the loss makes the CPU wait for the device: at every step on the CPU (free there), every
    # DIVERGENCE_CHECK_STEPS on a GPU, and at the end; a non-finite loss poisons the running total either way.
    check_every = 1 if torch.device(device).type == "cpu" else DIVERGENCE_CHECK_STEPS
    for step, raw in enumerate(loader, 1):
        x = task.inputs.train(raw, device, generator)
        y = raw.y.to(device, non_blocking=True)
        x = in_layout(x, channels_last)
        with autocast(device, amp):
            logits = model(x)
            loss = task.train_loss(logits.float(), y)
        if step % check_every == 0 and not torch.isfinite(loss):
            return {"train_loss": math.nan}
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step_scheduler is not None:
            step_scheduler()
        if stop is not None and stop():
            return {"train_loss": math.nan, "stopped": True}
        total_loss += loss.detach() * len(y)
        if hits is not None:
            correct += hits(logits, y)
        seen += len(y)
    result = {"train_loss": (total_loss / max(seen, 1)).item()}
    if not math.isfinite(result["train_loss"]):
        return {"train_loss": math.nan}
    if hits is not None:
        result[f"train_{task.kind.train_accuracy}"] = (correct / max(seen, 1)).item()
    return result


@torch.no_grad()
def evaluate(model, task, loader, device, *, amp: bool = False, channels_last: bool = False) -> dict:
    """Loss and metrics over a whole split, with the deterministic evaluation transform.

    Inputs with a crops axis ([B, crops, C, H, W]) are scored crop by crop and their probabilities averaged.
    """
    model.eval()
    scores, targets = [], []
    for raw in loader:
        x = task.inputs.eval(raw, device)
        crops = x.shape[1] if x.dim() == 5 else 1
        x = x.flatten(0, 1) if x.dim() == 5 else x
        x = in_layout(x, channels_last)
        with autocast(device, amp):
            logits = model(x).float()
        probabilities = task.probabilities(logits).view(-1, crops, logits.shape[-1]).mean(1)
        scores.append(probabilities)
        targets.append(raw.y.to(device))
    scores, targets = torch.cat(scores), torch.cat(targets)
    return {"loss": task.eval_loss(scores, targets), **task.metrics(scores, targets)}


@torch.no_grad()
def recalibrate_batchnorm(model, task, loader, device, *, amp: bool = False, channels_last: bool = False) -> None:
    """Recompute the batch-norm running statistics of the trained layers as exact averages over `loader`
    (the training rows, evaluation transform): "precise BN" (Wu & Johnson 2021).

    Running averages with momentum 0.1 lag far behind the weights in short runs on small data, which makes
    evaluation-mode accuracy collapse to chance even when the model has learned; exact statistics fix that.
    Frozen layers keep theirs.
    """
    train_mode(model)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the batches below
    for raw in loader:
        x = task.inputs.eval(raw, device)
        x = x[:, x.shape[1] // 2] if x.dim() == 5 else x  # one crop per item is enough for statistics
        x = in_layout(x, channels_last)
        with autocast(device, amp):
            model(x)
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
