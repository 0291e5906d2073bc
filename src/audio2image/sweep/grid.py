"""The sweep's plan: the pretraining run and the grid of transfer runs, each with a stable identity.

A transfer run's folder is named by a hash of what determines its result: the target modality's keys, the
transfer keys, the target store, its fraction/init/seed/freeze and, for a pretrained init, the pretraining run's
own hash. Growing the grid therefore adds folders without touching finished ones, and changing a setting never
reuses a stale result. `plan_transfer` is the one definition of a transfer run: the sweep and
`audio2image transfer` both call it, so a cell has the same folder, identity and results row whichever ran it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from audio2image.config import Config, config_hash, keys_for
from audio2image.training.initspec import PRETRAINED_RUNS, parse_init
from audio2image.training.run import RunSpec
from audio2image.util import read_json_or_none

PRETRAIN_DIR = "pretrain"


@dataclass
class PlannedRun:
    config: Config
    spec: RunSpec
    run_dir: Path


@dataclass(frozen=True)
class Init:
    """An init as a run loads it, as results name it, and as it enters the run's identity."""

    load: str  # "audio:runs/demo/pretrain", "random", "checkpoint:PATH", ...
    name: str  # "audio", "random", "checkpoint:PATH": what results.csv and the report call it
    identity: str  # the pretraining run's id for a pretraining with one, else `load`
    pretrain_run: str = ""  # that id, recorded in the run's identity


def pretrain_identity(config: Config, store: Path) -> dict:
    values = {k: getattr(config, k) for k in keys_for(config.dataset("source").modality, "pretrain")}
    return {**values, "source": config.source, "store": Path(store).name}


def pretrain_plan(config: Config, store: Path) -> PlannedRun:
    run_id = config_hash(pretrain_identity(config, store))
    spec = RunSpec("pretrain", Path(store), 1.0, "random", config.pretrain_seed, "none", run_id)
    return PlannedRun(config, spec, config.experiment_dir / PRETRAIN_DIR)


def uses_pretraining(config: Config) -> bool:
    """Whether an init of the grid is this experiment's pretraining (in full, in part, or its statistics)."""
    source = config.dataset("source").modality
    return any(parse_init(init).base == source and not parse_init(init).path for init in config.inits)


def resolve_init(init: str, config: Config) -> Init:
    """What an init in the config means. A bare modality ("audio", "audio@2", "audio-stats") is this experiment's
    pretraining on its source; "audio:RUN_DIR" names a pretraining run folder, identified by the run id in its
    run.json when it has one."""
    spec = parse_init(init)
    if spec.base not in PRETRAINED_RUNS:
        return Init(init, spec.name if spec.base != "checkpoint" else init, init)
    source = config.dataset("source").modality
    path = spec.path
    if not path:
        if spec.base != source:
            raise ValueError(f"config key 'inits': {init!r} names a pretrained init, but the source dataset "
                             f"{config.source} is {source}; use {source!r} or {init}:RUN_DIR")
        path = str(config.experiment_dir / PRETRAIN_DIR)
    run_dir = Path(path)
    own = config.experiment_dir / PRETRAIN_DIR
    if run_dir.resolve() == own.resolve():
        run_dir = own  # one spelling of this experiment's pretraining, however the user wrote it
    identity = read_json_or_none(run_dir / "run.json") or {}
    pretrain_run = str(identity.get("run_id", "")) if identity.get("stage") == "pretrain" else ""
    load = f"{spec.name}:{run_dir}"
    if not pretrain_run:
        return Init(load, spec.name, load)
    # the full init keeps the bare run id as its identity (the run ids of earlier sweeps stay valid)
    return Init(load, spec.name, pretrain_run if spec.name == spec.base else f"{spec.name}:{pretrain_run}",
                pretrain_run)


def transfer_run_id(config: Config, store: Path, fraction: float, init: str, seed: int, freeze: str) -> str:
    """The hash naming a transfer run's folder: the target modality's keys, the transfer keys, the target store,
    and the run's own values (`init`: the init's identity, see `Init`)."""
    identity = {k: getattr(config, k) for k in keys_for(config.dataset("target").modality, "transfer")}
    identity.update(target=config.target, store=Path(store).name, fraction=fraction, init=init, seed=seed,
                    freeze=freeze)
    return config_hash(identity)


def plan_transfer(config: Config, store: Path, fraction: float, init: str, seed: int, freeze: str) -> PlannedRun:
    """The one definition of a transfer run (its config, identity and folder) from a cell of the grid."""
    chosen = resolve_init(init, config)
    run_id = transfer_run_id(config, store, fraction, chosen.identity, seed, freeze)
    run_config = dataclasses.replace(config, fraction=fraction, init=chosen.load, seed=seed, freeze=freeze)
    extra = {"init_name": chosen.name, **({"pretrain_run": chosen.pretrain_run} if chosen.pretrain_run else {})}
    spec = RunSpec("transfer", Path(store), fraction, chosen.load, seed, freeze, run_id, extra=extra)
    return PlannedRun(run_config, spec, config.experiment_dir / "transfer" / run_id)


def transfer_plan(config: Config, store: Path) -> list[PlannedRun]:
    """fractions x inits x seeds x freezes, in that nesting order."""
    return [plan_transfer(config, store, fraction, init, seed, freeze) for fraction in config.fractions
            for init in config.inits for seed in config.seeds for freeze in config.freezes]
