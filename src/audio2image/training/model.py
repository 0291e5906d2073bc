"""The model: torchvision's ResNet-18, loading a backbone into it, and which of its layers train (freeze).

Spectrograms enter as 3 identical channels, so conv1 keeps its RGB shape and every pretrained layer, conv1
included, loads unchanged into an image model (and an image model's into an audio one).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet18

from audio2image.training.initspec import STAGES

HEAD = ("fc.weight", "fc.bias")
FREEZE_STAGES = {"none": 0, "original": 2, "linear": len(STAGES)}  # original: conv1, bn1 and layer1, as the seed did
IMAGENET_FILE = "resnet18-f37072fd.pth"  # torchvision's ResNet18_Weights.IMAGENET1K_V1


class InitError(RuntimeError):
    """Starting weights that cannot be found or do not fit; one sentence saying what to do."""


def build_model(num_outputs: int, seed: int) -> nn.Module:
    """A ResNet-18 with a fresh `num_outputs` head; the random weights depend only on `seed`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return resnet18(num_classes=num_outputs)


def load_backbone(model: nn.Module, state: dict) -> None:
    """Load every layer but the head (`strict=False`), then check that exactly the head was left out."""
    backbone = {k: v for k, v in state.items() if k not in HEAD}
    result = model.load_state_dict(backbone, strict=False)
    if set(result.missing_keys) != set(HEAD) or result.unexpected_keys:
        raise InitError(f"weights do not fit a ResNet-18 backbone: missing {result.missing_keys}, "
                        f"unexpected {result.unexpected_keys}")


def imagenet_path(configured: str) -> Path:
    if configured:
        path = Path(configured)
    else:
        path = Path(torch.hub.get_dir()) / "checkpoints" / IMAGENET_FILE
    if not path.is_file():
        raise InitError(
            f"init 'imagenet': no ImageNet weights at {path}. Nothing is downloaded: put torchvision's "
            f"{IMAGENET_FILE} there (torchvision.models.ResNet18_Weights.IMAGENET1K_V1, fetched on a machine "
            "with internet), or set imagenet_weights=PATH to a ResNet-18 state dict")
    return path


def frozen_stage_count(policy: str) -> int:
    if policy.startswith("stages:"):
        return int(policy.split(":")[1])
    return FREEZE_STAGES[policy]


def freeze(model: nn.Module, policy: str) -> list[str]:
    """Stop the first stages (per policy) from training; returns the frozen module names.

    Frozen means frozen: parameters get no gradient and batch-norm statistics stop updating (see `train_mode`).
    """
    names = [name for stage in STAGES[:frozen_stage_count(policy)] for name in stage]
    for name in names:
        for parameter in getattr(model, name).parameters():
            parameter.requires_grad_(False)
    model.frozen_modules = names
    return names


def train_mode(model: nn.Module) -> None:
    """model.train(), except frozen modules, which stay in eval mode so their BN running statistics are kept."""
    model.train()
    inner = unwrap(model)
    for name in getattr(inner, "frozen_modules", []):
        getattr(inner, name).eval()


def unwrap(model: nn.Module) -> nn.Module:
    """The ResNet inside DistributedDataParallel and torch.compile wrappers."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model
