"""The sweep's plan: the pretraining run and the grid of transfer runs, each with a stable identity.

A transfer run's folder is named by a hash of what determines its result: the target modality's keys, the
transfer keys, the target store, its fraction/init/seed/freeze and, for a pretrained init, the pretraining run's
own hash. Growing the grid therefore adds folders without touching finished ones, and changing a setting never
reuses a stale result.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from audio2image.config import MODALITY, Config, config_hash, keys_for
from audio2image.training.run import RunSpec


@dataclass
class PlannedRun:
    config: Config
    spec: RunSpec
    run_dir: Path


def pretrain_identity(config: Config, store: Path) -> dict:
    values = {k: getattr(config, k) for k in keys_for(MODALITY[config.source], "pretrain")}
    return {**values, "source": config.source, "store": Path(store).name}


def pretrain_plan(config: Config, store: Path) -> PlannedRun:
    run_id = config_hash(pretrain_identity(config, store))
    spec = RunSpec("pretrain", Path(store), 1.0, "random", config.pretrain_seed, "none", run_id)
    return PlannedRun(config, spec, config.experiment_dir / "pretrain")


def uses_pretraining(config: Config) -> bool:
    return MODALITY[config.source] in config.inits


def resolve_init(init: str, config: Config, pretrain: PlannedRun | None) -> tuple[str, str]:
    """(init as the run loads it, init as it is named in results). "audio" means this experiment's pretraining."""
    if init == MODALITY[config.source] and pretrain is not None:
        return f"{init}:{pretrain.run_dir}", init
    if init in MODALITY.values():
        raise ValueError(f"config key 'inits': {init!r} names a pretrained init, but the source dataset "
                         f"{config.source} is {MODALITY[config.source]}; use {MODALITY[config.source]!r} or "
                         f"{init}:RUN_DIR")
    return init, init


def transfer_run_id(config: Config, store: Path, fraction: float, init: str, seed: int, freeze: str) -> str:
    """The hash naming a transfer run's folder: the target modality's keys, the transfer keys, the target store,
    and the run's own values (`init` as loaded, or the pretraining run's id for this experiment's pretraining)."""
    identity = {k: getattr(config, k) for k in keys_for(MODALITY[config.target], "transfer")}
    identity.update(target=config.target, store=Path(store).name, fraction=fraction, init=init, seed=seed,
                    freeze=freeze)
    return config_hash(identity)


def transfer_plan(config: Config, store: Path, pretrain: PlannedRun | None) -> list[PlannedRun]:
    """fractions x inits x seeds x freezes, in that nesting order."""
    planned = []
    for fraction in config.fractions:
        for init in config.inits:
            load, label = resolve_init(init, config, pretrain)
            pretrained_from = pretrain.spec.run_id if load != label else load
            for seed in config.seeds:
                for policy in config.freezes:
                    run_id = transfer_run_id(config, store, fraction, pretrained_from, seed, policy)
                    run_config = dataclasses.replace(config, fraction=fraction, init=load, seed=seed, freeze=policy)
                    spec = RunSpec("transfer", Path(store), fraction, load, seed, policy, run_id,
                                   extra={"init_name": label})
                    planned.append(PlannedRun(run_config, spec, config.experiment_dir / "transfer" / run_id))
    return planned
