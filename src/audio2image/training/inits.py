"""Giving a model the starting weights an init names (see training/initspec.py for the names): all of a
pretrained backbone, its first K stages, or the weight-statistics control.

    >>> initialise(build_model(10, seed=0), "audio@2:runs/demo/pretrain/source-seed0", seed=0)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from audio2image.training.initspec import PRETRAINED_RUNS, STAGES, InitSpec, parse_init
from audio2image.training.model import HEAD, InitError, imagenet_path, load_backbone

_STREAM_STATS = 7  # the statistics control's draws: a stream of their own, apart from the model's random init


def initialise(model: nn.Module, init: str, *, seed: int = 0, imagenet_weights: str = "") -> dict:
    """Give `model` (a fresh `build_model(outputs, seed)`) the starting weights named by `init`, keeping its head.

    Returns what was loaded from where, for the run's result.
    """
    spec = parse_init(init)
    if spec.base == "random":
        return {"init": "random"}
    path = weights_path(spec, imagenet_weights)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - a truncated or foreign file: say which, not a zip-reader trace
        raise InitError(f"init {init}: the weights file {path} does not load ({type(error).__name__}: "
                        f"{' '.join(str(error).split())[:160]}); replace it, or redo the run that wrote it") from error
    state = state.get("model", state) if isinstance(state, dict) else state
    if spec.stats:
        weight_statistics(model, state, seed)
    elif spec.depth is not None:
        load_stages(model, state, spec.depth)
    else:
        load_backbone(model, state)
    return {"init": init, "weights": str(path)}


def weights_path(spec: InitSpec, imagenet_weights: str = "") -> Path:
    if spec.base == "imagenet":
        return imagenet_path(imagenet_weights)
    path = Path(spec.path) if spec.base == "checkpoint" else Path(spec.path) / "best.pt"
    if not path.is_file():
        hint = ("; it names a pretraining run folder: finish that pretraining first (`audio2image pretrain` with the "
                "same config)" if spec.base in PRETRAINED_RUNS else "")
        raise InitError(f"init {spec.name}:{spec.path}: no weights at {path}{hint}")
    return path


def stage_of(key: str) -> int:
    """The stage (0-based index into STAGES) a state-dict key belongs to; the head is past the last stage."""
    module = key.split(".", 1)[0]
    return next((i for i, stage in enumerate(STAGES) if module in stage), len(STAGES))


def load_stages(model: nn.Module, state: dict, depth: int) -> None:
    """Load the first `depth` stages of `state`; every other tensor stays as the model has it."""
    chosen = {k: v for k, v in state.items() if stage_of(k) < depth and k not in HEAD}
    expected = {k for k in model.state_dict() if stage_of(k) < depth}
    if set(chosen) != expected:
        raise InitError(f"weights do not fit the first {depth} stages of a ResNet-18: missing "
                        f"{sorted(expected - set(chosen))}, unexpected {sorted(set(chosen) - expected)}")
    model.load_state_dict(chosen, strict=False)


def weight_statistics(model: nn.Module, state: dict, seed: int) -> None:
    """Transfusion's Mean Var init: conv/linear weights ~ N(mean, std^2) of the pretrained tensor; batch-norm the
    identity. Draws depend only on (seed, parameter name), not on the order modules are visited."""
    load_backbone(model, state)  # first checks that the weights fit the backbone
    with torch.no_grad():
        for name, module in model.named_modules():
            if name == "fc":
                continue
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                source = state[f"{name}.weight"].double()
                rng = np.random.default_rng([seed, _STREAM_STATS, *name.encode()])
                draw = rng.normal(source.mean().item(), source.std().item(), tuple(source.shape))
                module.weight.copy_(torch.from_numpy(draw))
            elif isinstance(module, nn.BatchNorm2d):
                module.reset_parameters()  # weight 1, bias 0, running mean 0, running variance 1, no batches seen
