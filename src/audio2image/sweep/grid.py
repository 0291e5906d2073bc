"""The sweep's plan: the pretraining run and the grid of transfer runs, each with a stable identity.

A transfer run's folder is named by a hash of what determines its result: the target modality's keys, the
transfer keys, the target store's name (which does not say where data_dir is: moving the cache changes no id), its
fraction/init/seed/freeze and, for a pretrained init, the pretraining run's own hash. Growing the grid therefore
adds folders without touching finished ones, and changing a setting never reuses a stale result. `plan_transfer` is
the one definition of a transfer run: the sweep and
`audio2image transfer` both call it, so a cell has the same folder, identity and results row whichever ran it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import yaml

from audio2image.config import PRETRAIN_DIR, Config, config_hash, keys_for
from audio2image.errors import UserError
from audio2image.prepare.stores import store_names
from audio2image.sides import pretrained_side
from audio2image.training.initspec import PRETRAINED_RUNS, parse_init
from audio2image.training.run import RunSpec
from audio2image.util import read_json, read_json_or_none

@dataclass
class PlannedRun:
    config: Config
    spec: RunSpec
    run_dir: Path


@dataclass(frozen=True)
class Init:
    """An init as a run loads it, as results name it, and as it enters the run's identity."""

    load: str  # "audio:runs/demo/pretrain/source-seed0", "random", "checkpoint:PATH", ...
    name: str  # "audio", "random", "checkpoint:PATH": what results.csv and the report call it
    identity: str  # the pretraining run's id for a pretraining with one, else `load`
    pretrain_run: str = ""  # that id, recorded in the run's identity
    pretrain_seed: int | None = None  # the seed of this experiment's pretraining run it loads


def pretrain_identity(config: Config, store: Path, side: str = "source") -> dict:
    values = {k: getattr(config, k) for k in keys_for(config.dataset(side).modality, "pretrain")}
    return {**values, "source": getattr(config, side), "store": Path(store).name}


def pretrain_dir(config: Config, side: str, seed: int) -> Path:
    return config.experiment_dir / PRETRAIN_DIR / f"{side}-seed{seed}"


def pretrain_plan(config: Config, store: Path, side: str = "source", seed: int | None = None) -> PlannedRun:
    """The pretraining run on a side's store with one pretraining seed (default: the config's pretrain_seed). A
    run made from the store under a former name (prepare/stores.py: store_names) keeps the id it was made with."""
    config = dataclasses.replace(config, pretrain_seed=config.pretrain_seed if seed is None else seed)
    run_dir = pretrain_dir(config, side, config.pretrain_seed)
    ids = [config_hash(pretrain_identity(config, Path(name), side)) for name in store_names(store)]
    made = (read_json_or_none(run_dir / "run.json") or {}).get("run_id")
    run_id = made if made in ids else ids[0]
    spec = RunSpec("pretrain", Path(store), 1.0, "random", config.pretrain_seed, "none", run_id,
                   extra={"side": side, "source": getattr(config, side)})
    return PlannedRun(config, spec, run_dir)


def pretrain_seed_for(config: Config, seed: int) -> int:
    """The pretraining seed a transfer seed's pretrained init uses: seed number i (its position in `seeds`; a seed
    outside the list: its value) takes pretrain_seeds[i mod n], so the pretrained runs' own spread enters every
    comparison paired by seed."""
    index = config.seeds.index(seed) if seed in config.seeds else seed
    return config.pretrain_seeds[index % len(config.pretrain_seeds)]


def resolve_init(init: str, config: Config, seed: int | None = None, planned: dict | None = None) -> Init:
    """What an init in the config means for a run of transfer seed `seed`. A bare modality ("audio", "audio@2",
    "audio-stats") or `control` is this experiment's pretraining on the source or control, the run of
    `pretrain_seed_for(seed)`; "audio:RUN_DIR" names a pretraining run folder, identified by the run id in its
    run.json when it has one. `planned` ({run folder: run id}) gives the ids of this experiment's pretraining runs
    that have not started yet (no run.json), so that a plan made before pretraining names the transfer runs the
    sweep will make after it."""
    spec = parse_init(init)
    if spec.base not in PRETRAINED_RUNS:
        return Init(init, spec.name if spec.base != "checkpoint" else init, init)
    pretrain_seed = None
    if spec.path:
        run_dir = Path(spec.path)
    else:
        pretrain_seed = pretrain_seed_for(config, config.seed if seed is None else seed)
        run_dir = pretrain_dir(config, pretrained_side(config, spec.base), pretrain_seed)
    own = config.experiment_dir / PRETRAIN_DIR
    if run_dir.resolve().parent == own.resolve():
        run_dir = own / run_dir.name  # one spelling of this experiment's pretraining, however the user wrote it
    identity = read_json_or_none(run_dir / "run.json") or {}
    if not identity and run_dir in (planned or {}):
        identity = {"stage": "pretrain", "run_id": planned[run_dir], "seed": pretrain_seed}
    pretrain_run = str(identity.get("run_id", "")) if identity.get("stage") == "pretrain" else ""
    if pretrain_seed is None and identity.get("stage") == "pretrain":
        pretrain_seed = identity.get("seed")
    load = f"{spec.name}:{run_dir}"
    if not pretrain_run:
        return Init(load, spec.name, load, pretrain_seed=pretrain_seed)
    # the full init keeps the bare run id as its identity (the run ids of earlier sweeps stay valid)
    return Init(load, spec.name, pretrain_run if spec.name == spec.base else f"{spec.name}:{pretrain_run}",
                pretrain_run, pretrain_seed)


def transfer_run_id(config: Config, store: Path, fraction: float, init: str, seed: int, freeze: str) -> str:
    """The hash naming a transfer run's folder: the target modality's keys, the transfer keys, the target store's
    name, and the run's own values (`init`: the init's identity, see `Init`). A run made from the store under a
    former name (prepare/stores.py: store_names) keeps the folder and id it has: no finished run is trained again."""
    identity = {k: getattr(config, k) for k in keys_for(config.dataset("target").modality, "transfer")}
    identity.update(target=config.target, fraction=fraction, init=init, seed=seed, freeze=freeze)
    ids = [config_hash({**identity, "store": name}) for name in store_names(store)]
    made = [i for i in ids if (config.experiment_dir / "transfer" / i).exists()]
    return made[0] if made else ids[0]


def plan_transfer(config: Config, store: Path, fraction: float, init: str, seed: int, freeze: str,
                  setting: tuple[float, float] | None = None, planned: dict | None = None) -> PlannedRun:
    """The one definition of a transfer run (its config, identity and folder) from a cell of the grid and, in a
    sweep, the (learning rate, weight decay) it trains with (default: the config's transfer_lr and
    transfer_weight_decay); `planned`: see `resolve_init`."""
    if setting is not None:
        config = dataclasses.replace(config, transfer_lr=setting[0], transfer_weight_decay=setting[1])
    chosen = resolve_init(init, config, seed, planned)
    run_id = transfer_run_id(config, store, fraction, chosen.identity, seed, freeze)
    run_config = dataclasses.replace(config, fraction=fraction, init=chosen.load, seed=seed, freeze=freeze)
    extra = {"init_name": chosen.name, "lr": config.transfer_lr, "weight_decay": config.transfer_weight_decay,
             **({"pretrain_run": chosen.pretrain_run} if chosen.pretrain_run else {}),
             **({"pretrain_seed": chosen.pretrain_seed} if chosen.pretrain_seed is not None else {})}
    spec = RunSpec("transfer", Path(store), fraction, chosen.load, seed, freeze, run_id, extra=extra)
    return PlannedRun(run_config, spec, config.experiment_dir / "transfer" / run_id)


def cells(config: Config) -> list[tuple[float, str, str]]:
    """(fraction, init, freeze) of the grid, in the report's nesting order; each gets its own setting chosen."""
    return [(fraction, init, freeze) for fraction in config.fractions for init in config.inits
            for freeze in config.freezes]


def transfer_plan(config: Config, store: Path, chosen: dict | None = None, seeds: list[int] | None = None,
                  planned: dict | None = None) -> list[PlannedRun]:
    """fractions x inits x seeds x freezes, in that nesting order; `chosen` maps a cell (fraction, init, freeze)
    to its setting (cells without one are left out), `seeds` narrows the seeds (the tuning runs); `planned`: see
    `resolve_init`."""
    runs = []
    for fraction, init, freeze in cells(config):
        setting = chosen.get((fraction, init, freeze)) if chosen is not None else None
        if chosen is not None and setting is None:
            continue
        runs += [plan_transfer(config, store, fraction, init, seed, freeze, setting, planned)
                 for seed in seeds or config.seeds]
    return runs


class OtherPretraining(UserError):
    """The experiment folder holds a pretraining made with other settings (another backbone, say)."""


def check_same_pretraining(pretrain: PlannedRun) -> None:
    """Refuse to mix an earlier pretraining made with other settings into this experiment's folder, naming the
    settings that differ."""
    identity = pretrain.run_dir / "run.json"
    if not identity.is_file() or read_json(identity).get("run_id") == pretrain.spec.run_id:
        return
    try:
        saved = yaml.safe_load((pretrain.run_dir / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        saved = {}
    ours = pretrain.config.to_dict()
    keys = pretrain_identity(pretrain.config, pretrain.spec.store, pretrain.spec.extra.get("side", "source"))
    differ = [f"{key}={saved[key]} (now {ours[key]})" for key in keys
              if key in saved and key in ours and saved[key] != ours[key]]
    raise OtherPretraining(f"{pretrain.run_dir} holds a pretraining made with other settings"
                           + (f" ({', '.join(differ)})" if differ else "") + "; choose another experiment name "
                           f"(name={pretrain.config.name}-2, say) or delete that folder")
