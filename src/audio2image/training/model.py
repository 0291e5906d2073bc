"""The model: the configured backbone with a fresh head, loading weights into it, and which stages train (freeze).

The backbone (training/backbone.py) says what its stages and head are; this module only asks it.
"""
from __future__ import annotations

from torch import nn

from audio2image.errors import UserError
from audio2image.training.backbone import Backbone, Stages, stages_of_model

# freeze policies by name -> stages frozen; None: all of them (a linear probe). "original": the original
# experiment froze ResNet-18's conv1, bn1 and layer1, its first two stages.
FREEZE_STAGES = {"none": 0, "original": 2, "linear": None}


class InitError(UserError, RuntimeError):
    """Starting weights that cannot be found or do not fit; one sentence saying what to do."""


def build_model(num_outputs: int, seed: int, backbone: Backbone = Backbone()) -> nn.Module:
    """The backbone (default: ResNet-18 for 224 px images) with a fresh `num_outputs` head; the random weights
    depend only on `seed`."""
    return backbone.build(num_outputs, seed)


def stages_of(model: nn.Module) -> Stages:
    """The stages of a model built by `build_model`, as its own group matcher gives them."""
    return stages_of_model(unwrap(model))


def load_backbone(model: nn.Module, state: dict) -> None:
    """Load every tensor but the head (`strict=False`), then check that exactly the head was left out."""
    parts = stages_of(model)
    backbone = {k: v for k, v in state.items() if k not in parts.head}
    try:
        result = model.load_state_dict(backbone, strict=False)
    except RuntimeError as error:  # a tensor of another shape: another architecture or width
        raise InitError(f"weights do not fit a {model.pretrained_cfg['architecture']} backbone: "
                        f"{' '.join(str(error).split())[:300]}") from error
    if set(result.missing_keys) != set(parts.head) or result.unexpected_keys:
        raise InitError(f"weights do not fit a {model.pretrained_cfg['architecture']} backbone: missing "
                        f"{_few(set(result.missing_keys) - parts.head)}, unexpected {_few(result.unexpected_keys)}")


def _few(keys) -> str:
    keys = sorted(keys)
    return str(keys[:6])[:-1] + (f", ... {len(keys) - 6} more]" if len(keys) > 6 else "]")


def frozen_stage_count(policy: str, stage_count: int) -> int:
    """How many of the first stages a freeze policy (none, original, linear, stages:K) stops from training."""
    if policy.startswith("stages:"):
        return int(policy.split(":")[1])
    count = FREEZE_STAGES[policy]
    return stage_count if count is None else count


def freeze(model: nn.Module, policy: str) -> list[str]:
    """Stop the first stages (per policy) from training; returns the frozen modules' names.

    Frozen means frozen: parameters get no gradient, and the modules made only of frozen tensors stay in eval
    mode (see `train_mode`), so their batch-norm statistics are kept and their dropout is off.
    """
    parts = stages_of(model)
    count = frozen_stage_count(policy, len(parts))
    frozen = {key for key in model.state_dict() if parts.stage_of(key) < count}
    for name, parameter in model.named_parameters():
        if name in frozen:
            parameter.requires_grad_(False)
    model.frozen_modules = _whole_modules(model, frozen)
    return model.frozen_modules


def _whole_modules(model: nn.Module, frozen: set) -> list[str]:
    """The outermost modules all of whose tensors are in `frozen`."""
    keys = list(model.state_dict())
    whole: list[str] = []
    for name, _ in model.named_modules():
        if not name or any(name.startswith(outer + ".") for outer in whole):
            continue
        own = [k for k in keys if k.startswith(name + ".")]
        if own and all(k in frozen for k in own):
            whole.append(name)
    return whole


def train_mode(model: nn.Module) -> None:
    """model.train(), except frozen modules, which stay in eval mode so their BN running statistics are kept."""
    model.train()
    inner = unwrap(model)
    for name in getattr(inner, "frozen_modules", []):
        inner.get_submodule(name).eval()


def unwrap(model: nn.Module) -> nn.Module:
    """The backbone inside DistributedDataParallel and torch.compile wrappers."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model
