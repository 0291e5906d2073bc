"""Giving a model the starting weights an init names (see training/initspec.py for the names): all of a
pretrained backbone, its first K stages, or the weight-statistics control.

    >>> initialise(build_model(10, seed=0), "audio@2:runs/demo/pretrain/source-seed0", seed=0)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from audio2image.training.backbone import Backbone, fit, is_norm
from audio2image.training.files import read_checkpoint
from audio2image.training.initspec import PRETRAINED_RUNS, InitSpec, parse_init
from audio2image.training.model import InitError, load_backbone, stages_of
from audio2image.training.published import published_path, published_state, read_weights

_STREAM_STATS = 7  # the statistics control's draws: a stream of their own, apart from the model's random init


def initialise(model: nn.Module, init: str, *, seed: int = 0, imagenet_weights: str = "",
               backbone: Backbone | None = None) -> dict:
    """Give `model` (a fresh `build_model(outputs, seed, backbone)`) the starting weights named by `init`, keeping
    its head. `backbone`: what the model was built as (default: its architecture for 3-channel 224 px input),
    which the published weights (`imagenet`) are fitted to.

    Returns what was loaded from where, for the run's result.
    """
    spec = parse_init(init)
    if spec.base == "random":
        return {"init": "random"}
    if spec.base == "imagenet":
        backbone = backbone or Backbone(model.pretrained_cfg["architecture"])
        path = published_path(backbone.name, imagenet_weights)
        state = published_state(model, backbone, path)
    else:
        path = weights_path(spec)
        state = _pretrained_state(model, path, init)
    if spec.stats:
        weight_statistics(model, state, seed)
    elif spec.depth is not None:
        load_stages(model, state, spec.depth)
    else:
        load_backbone(model, state)
    return {"init": init, "weights": str(path)}


def _pretrained_state(model: nn.Module, path: Path, init: str) -> dict:
    """A run's (or a checkpoint's) weights, fitted to `model`'s input; refused when made with another backbone."""
    try:
        saved = read_checkpoint(path)
    except Exception as error:  # noqa: BLE001 - a truncated or foreign file: say which, not a zip-reader trace
        raise InitError(f"init {init}: the weights file {path} does not load ({type(error).__name__}: "
                        f"{' '.join(str(error).split())[:160]}); replace it, or redo the run that wrote it") from error
    if not (isinstance(saved, dict) and isinstance(saved.get("model"), dict)):
        saved = {"model": read_weights(path)}  # a bare state dict (checkpoint:PATH)
    made = saved.get("backbone") or {}  # runs made before backbones were configurable: ResNet-18, 3 channels
    ours = model.pretrained_cfg["architecture"]
    if made.get("name") and made["name"].split(".")[0] != ours:
        raise InitError(f"init {init}: {path} holds a {made['name']} backbone, this run builds {ours}; set "
                        f"backbone={made['name']} or pretrain with backbone={ours}")
    return fit(model, saved["model"], made.get("grid"))


def weights_path(spec: InitSpec) -> Path:
    path = Path(spec.path) if spec.base == "checkpoint" else Path(spec.path) / "best.pt"
    if not path.is_file():
        hint = ("; it names a pretraining run folder: finish that pretraining first (`audio2image pretrain` with the "
                "same config)" if spec.base in PRETRAINED_RUNS else "")
        raise InitError(f"init {spec.name}:{spec.path}: no weights at {path}{hint}")
    return path


def load_stages(model: nn.Module, state: dict, depth: int) -> None:
    """Load the first `depth` stages of `state`; every other tensor stays as the model has it."""
    parts = stages_of(model)
    if depth > len(parts):
        raise InitError(f"@{depth}: {model.pretrained_cfg['architecture']} has {len(parts)} stages")
    chosen = {k: v for k, v in state.items() if parts.stage_of(k) < depth}
    expected = {k for k in model.state_dict() if parts.stage_of(k) < depth}
    if set(chosen) != expected:
        missing, unexpected = sorted(expected - set(chosen))[:6], sorted(set(chosen) - expected)[:6]
        raise InitError(f"weights do not fit the first {depth} stages of a {model.pretrained_cfg['architecture']}: "
                        f"missing {missing}, unexpected {unexpected}")
    model.load_state_dict(chosen, strict=False)


def weight_statistics(model: nn.Module, state: dict, seed: int) -> None:
    """Transfusion's Mean Var init, for every kind of tensor: each parameter of the backbone (conv and linear
    weights and biases, position embeddings, class tokens, layer-scale gammas, ...) is drawn i.i.d. from
    N(mean, std^2) of the pretrained tensor; every normalisation layer (batch, layer, group, RMS norm) is the
    identity. Nothing pretrained is left but the scale of each tensor. Draws depend only on (seed, parameter
    name), not on the order they are visited in."""
    load_backbone(model, state)  # first checks that the weights fit the backbone
    head = stages_of(model).head
    with torch.no_grad():
        norms = set()
        for name, module in model.named_modules():
            if is_norm(module):
                _identity(module)
                norms.update(f"{name}.{p}" if name else p for p, _ in module.named_parameters(recurse=False))
        for name, parameter in model.named_parameters():
            if name in head or name in norms:
                continue
            source = state[name].double()
            spread = source.std().item() if source.numel() > 1 else 0.0
            rng = np.random.default_rng([seed, _STREAM_STATS, *name.encode()])
            parameter.copy_(torch.from_numpy(rng.normal(source.mean().item(), spread, tuple(source.shape))))


def _identity(norm: nn.Module) -> None:
    """A normalisation layer that passes its input on unscaled: weight 1, bias 0, and (batch norm) running mean 0,
    variance 1, no batches seen."""
    if hasattr(norm, "reset_running_stats"):
        norm.reset_running_stats()
    for name, parameter in norm.named_parameters(recurse=False):
        parameter.fill_(1.0 if name == "weight" else 0.0)
