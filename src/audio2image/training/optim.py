"""Optimisers and learning-rate schedules, from a stage's settings (`pretrain_*` or `transfer_*` keys).

The `recipe` configs use SGD with Nesterov momentum 0.9, a linear warm-up and cosine decay, label smoothing 0.1
for classification: the standard ResNet recipe of Goyal et al. 2017 (warm-up, linear lr scaling) and He et al. 2019
"Bag of Tricks" (cosine decay, label smoothing), also used by Kornblith et al. 2019 for fine-tuning and training
from scratch on small datasets including Caltech-256. The `original` config reproduces the seed: Adam 1e-3 and
ReduceLROnPlateau(mode="max") stepped on the validation *loss*, a bug kept on purpose for comparison.
"""
from __future__ import annotations

import math

import torch

ORIGINAL_PLATEAU_PATIENCE = {"pretrain": 3, "transfer": 4}


def build_optimizer(model: torch.nn.Module, settings: dict) -> torch.optim.Optimizer:
    """The stage's optimiser over the trainable parameters (of a model already on its device). Fused kernels on
    the CPU and CUDA: one pass over the parameters instead of one per operation, a sizeable share of a step on
    small inputs (benchmarks/README.md: fused optimisers)."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    lr, decay = settings["lr"], settings["weight_decay"]
    fused = bool(parameters) and all(p.device.type in ("cpu", "cuda") for p in parameters)
    if settings["optimizer"] == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=0.9, nesterov=True, weight_decay=decay, fused=fused)
    if settings["optimizer"] == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=decay, fused=fused)
    return torch.optim.AdamW(parameters, lr=lr, weight_decay=decay, fused=fused)


class Schedule:
    """One interface for per-step schedules (warm-up + cosine, constant) and the seed's per-epoch plateau."""

    def __init__(self, optimizer, settings: dict, steps_per_epoch: int, stage: str):
        self.kind = settings["schedule"]
        self.per_step = self.kind != "original-plateau"
        total = max(1, settings["epochs"] * steps_per_epoch)
        warmup = min(settings["warmup_epochs"] * steps_per_epoch, total - 1)
        if self.kind == "original-plateau":
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="max", patience=ORIGINAL_PLATEAU_PATIENCE[stage])
        else:
            def factor(step: int) -> float:
                if step < warmup:
                    return (step + 1) / warmup
                if self.kind == "constant":
                    return 1.0
                return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

            self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    def step(self) -> None:
        self.scheduler.step()

    def step_epoch(self, val_loss: float) -> None:
        self.scheduler.step(val_loss)  # mode="max" on a loss: the seed's bug, reproduced

    def state_dict(self) -> dict:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.scheduler.load_state_dict(state)


def build_schedule(optimizer, settings: dict, steps_per_epoch: int, stage: str) -> Schedule:
    return Schedule(optimizer, settings, steps_per_epoch, stage)
