"""Several targets in one study: each entry of `targets`, its folder, and its view of the study.

A study (two or more entries in `targets`) pretrains once, in E/pretrain/ (the source and the control, every
pretraining seed), and transfers to each target. Each target is seen through its *view*: the study's Config with
`target` and `target_root` set to that target, which the single-target code (selection, transfer runs, results,
CKA, the report) takes as it is. Its files (config.yaml, selection.json, results.csv, datasets.json, analysis/,
figures/) go to E/targets/<slug>/; its run folders stay E/transfer/<run id>, whose ids hold the target's dataset and
store, so a single-target experiment grown into a study keeps its runs. A control serves the targets of its own
modality: the view of a target of the other modality has no control and none of its inits.

    >>> [view.folder for view in target_views(config)]
    [PosixPath('runs/study/targets/caltech256'), PosixPath('runs/study/targets/audiofolder')]
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from audio2image.config import Config, config_hash
from audio2image.config_checks import ConfigError, parse_target
from audio2image.datasets.registry import DATASETS
from audio2image.training.initspec import parse_init

TARGETS_DIR = "targets"  # E/targets/<slug>/: one target's own files in a study


@dataclass(frozen=True)
class TargetView:
    """One target of an experiment, as the single-target code sees it."""

    name: str  # as results.csv's `target` column and the report name it: "caltech256", "imagefolder:data/pets"
    config: Config  # the study's config with target and target_root set to this target, `targets` empty
    folder: Path  # where its own files go: E itself for a single-target experiment, else E/targets/<slug>


def target_name(dataset: str, root: str) -> str:
    """A target as an entry of `targets` writes it: 'caltech256', 'imagefolder:data/pets'."""
    return f"{dataset}:{root}" if root else dataset


def is_study(config) -> bool:
    """Whether an experiment has several targets (a Config, or a config.yaml read as a dict)."""
    targets = config.get("targets") if isinstance(config, dict) else config.targets
    return len(targets or []) > 1


def target_slugs(entries: list[str]) -> list[str]:
    """The folder name of each entry: its dataset's name, with a short hash of its folder where the dataset is listed
    more than once (two image folders)."""
    parsed = [parse_target(entry) for entry in entries]
    names = [name for name, _ in parsed]
    return [name if names.count(name) == 1 else f"{name}-{config_hash({'root': os.path.normpath(root)})[:6]}"
            for name, root in parsed]


def target_folder(experiment: Path, entries: list[str], index: int) -> Path:
    """E/targets/<slug> of the entry at `index` (the report finds a target's files by it)."""
    return Path(experiment) / TARGETS_DIR / target_slugs(entries)[index]


def target_views(config: Config) -> list[TargetView]:
    """Each target's view of the experiment, in the order of `targets`; one view, the experiment itself (with a
    single entry of `targets` as its target), when it has one target."""
    if not is_study(config):
        if config.targets:
            dataset, root = parse_target(config.targets[0])
            config = dataclasses.replace(config, target=dataset, target_root=root, targets=[])
        return [TargetView(target_name(config.target, config.target_root), config, config.experiment_dir)]
    return [_view(config, entry, target_folder(config.experiment_dir, config.targets, index))
            for index, entry in enumerate(config.targets)]


def one_target(config: Config, command: str) -> Config:
    """The config of an experiment's one target (a single entry of `targets` as its target and target_root); a
    study is refused, naming its targets' own configs: `command` works on one target."""
    if is_study(config):
        configs = ", ".join(str(view.folder / "config.yaml") for view in target_views(config))
        raise ConfigError(f"config key 'targets': {command} works on one target, and {len(config.targets)} are "
                          f"given; use one target's config ({configs}) or a single entry of targets")
    return target_views(config)[0].config


def _view(config: Config, entry: str, folder: Path) -> TargetView:
    dataset, root = parse_target(entry)
    other = bool(config.control) and config.dataset("control").modality != DATASETS[dataset].modality
    changes = {"target": dataset, "target_root": root, "targets": []}
    if other:  # the control's pretraining says nothing of a target of the other modality: its inits are not run
        changes.update(control="", control_root="", inits=[init for init in config.inits if not _of_control(init)])
    return TargetView(target_name(dataset, root), dataclasses.replace(config, **changes), folder)


def _of_control(init: str) -> bool:
    """Whether an init loads this experiment's control pretraining (control, control@K, control-stats)."""
    spec = parse_init(init)
    return spec.base == "control" and not spec.path
