"""The plan of a sweep before it starts: the runs it will train, how many have finished, the time and disk they take,
and (where the experiment has results) the power its design will have. Nothing is prepared, trained or written.

The runs are the sweep's own: the same functions name them (grid.pretrain_plan, selection.tuning_plan,
grid.transfer_plan), so every planned folder is the one the sweep will make. Before pretraining, the transfer runs
of a pretrained init are named by the pretraining run ids the sweep will give (grid.resolve_init's `planned`).
The final runs of a cell are known once its tuning runs have all finished (the choice is then what the sweep will
choose: selection.known_choices); before that they are counted (seeds x cells), their ids decided after tuning.
A finished run is one whose result.json reads (and, completed, whose best.pt is whole): what training skips.

    >>> plan = plan_experiment(load_config("configs/demo.yaml"))
    >>> plan["summary"]
    'plan: 4 pretraining, 20 tuning, 50 final runs (10 of them tuning runs; 0 finished): 64 to train; ...'
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from audio2image.config import Config
from audio2image.prepare.stores import planned_store
from audio2image.sides import check_all_roots, pretrained_sides
from audio2image.sweep import check_before_work
from audio2image.sweep.costs import CALIBRATED, estimate, size_words, words
from audio2image.sweep.grid import PlannedRun, cells, check_same_pretraining, pretrain_plan, transfer_plan
from audio2image.sweep.selection import known_choices, settings_of, tuning_plan
from audio2image.targets import is_study, target_views
from audio2image.training.files import peek_finished


@dataclass
class PlannedRuns:
    """The runs of a sweep, by kind; a run may be of two kinds (a chosen setting's tuning runs are final runs)."""

    pretraining: list[PlannedRun]
    tuning: list[PlannedRun]
    final: list[PlannedRun]  # of the cells whose setting is known
    undecided: list[tuple]  # cells (fraction, init, freeze) whose setting is chosen after tuning
    finished: dict = field(default_factory=dict)  # run folder -> whether it has finished
    target: str = "target"  # its target's key in the plan's stores (a study's: "target NAME")


def plan_experiment(config: Config) -> dict:
    """What `audio2image sweep` with this config will train, how long and how much disk it will take, and the power
    of its design where the experiment has results; a bad config raises the errors `run` raises."""
    check_all_roots(config)
    check_before_work(config)
    return make_plan(config)


def make_plan(config: Config) -> dict:
    """`plan_experiment` after its checks (the sweep makes them itself). A study's runs are counted per target and
    in total; its pretraining once."""
    views = target_views(config)
    study, config = is_study(config), config if is_study(config) else views[0].config
    keys = [f"target {view.name}" if study else "target" for view in views]
    stores = {side: planned_store(config, side) for side in pretrained_sides(config)}
    stores.update({key: planned_store(view.config, "target") for key, view in zip(keys, views)})
    pretraining = pretraining_runs(config, stores)
    parts = [planned_runs(view.config, stores, key, pretraining) for key, view in zip(keys, views)]
    runs = merged(parts)
    counts = run_counts(config, runs)
    if study:
        counts["cells"] = sum(len(cells(view.config)) for view in views)
        counts["targets"] = {view.name: target_counts(view, part) for view, part in zip(views, parts)}
    costs = estimate(config, stores, _work(config, stores, parts))
    plan = {"experiment": str(config.experiment_dir), "target": config.targets if study else config.target,
            "backbone": config.backbone, "device": config.device, "parallel": config.parallel, "runs": counts,
            **costs, "stores": {side: {k: store[k] for k in ("dataset", "store", "ready", "splits", "labels", "bytes")}
                               for side, store in stores.items()},
            "power": [{**row, **({"target": view.name} if study else {})} for view in views
                      for row in design_power(view.config, view.folder) or []] or None}
    plan["summary"] = summary_line(plan)
    return plan


def pretraining_runs(config: Config, stores: dict) -> list[PlannedRun]:
    """The pretraining runs (per pretrained side and pretraining seed), refused where the folder holds another."""
    pretraining = [pretrain_plan(config, Path(stores[side]["store"]), side, seed)
                   for side in pretrained_sides(config) for seed in config.pretrain_seeds]
    for run in pretraining:
        check_same_pretraining(run)  # the sweep's own refusal, before any work
    return pretraining


def planned_runs(config: Config, stores: dict, target: str = "target",
                 pretraining: list[PlannedRun] | None = None) -> PlannedRuns:
    """Every run the sweep will train for one target (`target`: its store's key in `stores`), named as the sweep
    names them, and which have finished; `pretraining`: the study's (default: this config's own)."""
    pretraining = pretraining_runs(config, stores) if pretraining is None else pretraining
    store = Path(stores[target]["store"])
    planned = {run.run_dir: run.spec.run_id for run in pretraining}
    tuning = tuning_plan(config, store, planned)
    chosen = known_choices(config, tuning)
    final = transfer_plan(config, store, {cell: s for cell, s in chosen.items() if s is not None}, planned=planned)
    undecided = [cell for cell in cells(config) if cell not in chosen]
    finished = {run.run_dir: peek_finished(run.run_dir) is not None for run in (*pretraining, *tuning, *final)}
    return PlannedRuns(pretraining, tuning, final, undecided, finished, target)


def merged(parts: list[PlannedRuns]) -> PlannedRuns:
    """The runs of every target together (their pretraining is one)."""
    return PlannedRuns(parts[0].pretraining, [run for part in parts for run in part.tuning],
                       [run for part in parts for run in part.final], [c for part in parts for c in part.undecided],
                       {run_dir: done for part in parts for run_dir, done in part.finished.items()})


def target_counts(view, runs: PlannedRuns) -> dict:
    """One target's transfer runs (tuning and final, each once; those of undecided cells counted) and how many have
    finished."""
    config = view.config
    folders = {run.run_dir for run in (*runs.tuning, *runs.final)}
    later = len(config.seeds) - (config.tune_seeds if runs.tuning else 0)
    planned = len(folders) + len(runs.undecided) * later
    finished = sum(runs.finished[run_dir] for run_dir in folders)
    return {"folder": str(view.folder), "runs": planned, "finished": finished, "to_train": planned - finished}


def run_counts(config: Config, runs: PlannedRuns) -> dict:
    """Per kind of run: how many, how many finished, their folders (relative to the experiment) and run ids; per
    init the tuning and final runs; how many runs have finished and are left to train (each run once)."""
    tuning_dirs = {run.run_dir for run in runs.tuning}
    tune = config.tune_seeds if runs.tuning else 0  # an undecided cell's runs on these seeds are tuning runs
    undecided = len(runs.undecided) * len(config.seeds)
    final = _kind(config, runs, runs.final)
    final.update(planned=final["planned"] + undecided, known=final["planned"], undecided_cells=len(runs.undecided),
                 decided_after_tuning=undecided, tuning_runs=sum(run.run_dir in tuning_dirs for run in runs.final)
                 + len(runs.undecided) * tune)
    return {"pretraining": _kind(config, runs, runs.pretraining), "tuning": _kind(config, runs, runs.tuning),
            "final": final, "per_init": _per_init(config, runs), "finished": sum(runs.finished.values()),
            "to_train": sum(not done for done in runs.finished.values())
            + len(runs.undecided) * (len(config.seeds) - tune),
            "settings": len(settings_of(config)), "cells": len(cells(config)), "seeds": len(config.seeds),
            "tune_seeds": config.seeds[:tune]}


def _kind(config: Config, runs: PlannedRuns, kind: list[PlannedRun]) -> dict:
    return {"planned": len(kind), "finished": sum(runs.finished[run.run_dir] for run in kind),
            "folders": [str(run.run_dir.relative_to(config.experiment_dir)) for run in kind],
            "run_ids": [run.spec.run_id for run in kind]}


def _per_init(config: Config, runs: PlannedRuns) -> dict:
    """Per init (as results name it): tuning and final runs, and how many of each have finished."""
    table: dict[str, dict] = {}

    def row(init: str) -> dict:
        return table.setdefault(init, dict.fromkeys(("tuning", "tuning_finished", "final", "final_finished"), 0))

    for kind, found in (("tuning", runs.tuning), ("final", runs.final)):
        for run in found:
            row(run.spec.extra["init_name"])[kind] += 1
            row(run.spec.extra["init_name"])[f"{kind}_finished"] += runs.finished[run.run_dir]
    for _, init, _ in runs.undecided:
        row(init)["final"] += len(config.seeds)
    return table


def _work(config: Config, stores: dict, parts: list[PlannedRuns]) -> dict[str, list[tuple]]:
    """The runs left to train per phase, as ((stage, side), training items): what costs.estimate times; a
    target's runs as the side of its store's key (each target is a network of its own)."""
    pretraining = parts[0].pretraining
    phases = {"pretraining": [(("pretrain", run.spec.extra["side"]),
                               train_items(stores[run.spec.extra["side"]], run.spec.fraction))
                              for run in pretraining if not parts[0].finished[run.run_dir]], "tuning": [], "final": []}
    for runs in parts:
        key, store = ("transfer", runs.target), stores[runs.target]
        tuning_dirs = {run.run_dir for run in runs.tuning}
        phases["tuning"] += [(key, train_items(store, run.spec.fraction)) for run in runs.tuning
                             if not runs.finished[run.run_dir]]
        phases["final"] += [(key, train_items(store, run.spec.fraction)) for run in runs.final
                            if run.run_dir not in tuning_dirs and not runs.finished[run.run_dir]]
        later = config.seeds[config.tune_seeds:] if runs.tuning else config.seeds
        phases["final"] += [(key, train_items(store, fraction)) for fraction, _, _ in runs.undecided for _ in later]
    return phases


def train_items(store: dict, fraction: float) -> int:
    """The training items of a run at `fraction` of a store's training split, as tasks.fraction_rows keeps them: at
    least one, and for classification at least one per class."""
    count = store["splits"].get("train", 0)
    kept = max(1, math.floor(fraction * count + 0.5))
    return min(count, max(kept, store["labels"])) if store["task"] == "classification" else kept


def design_power(config: Config, folder: Path | None = None) -> list[dict] | None:
    """Where the experiment has finished final runs: per pretrained init, freeze and fraction, the observed sd of
    its differences from random paired by seed, and at the planned seeds the smallest gain its paired test detects
    (80% power, at the strictest level of Holm's correction over the planned fractions) and the seeds that would
    detect effect_of_interest (report/power.py). None before any result. `folder`: the target's files (default: the
    experiment's; a study's target: E/targets/<slug>)."""
    from audio2image.report.power import min_detectable_gain, seeds_needed
    from audio2image.report.read import experiment_facts, sweep_rows
    from audio2image.report.stats import ALPHA, gain_table
    from audio2image.training.taskkinds import kind_or_classification

    exp, values = config.experiment_dir, config.to_dict()
    folder = Path(folder or exp)
    rows = sweep_rows(folder, values, runs=exp)[0] if (exp / "transfer").is_dir() else []
    if not rows:
        return None
    metric = kind_or_classification(experiment_facts(folder, values, runs=exp)["target"]["task"]).test_metrics[0]
    alpha, seeds, effect = ALPHA / len(config.fractions), len(config.seeds), config.effect_of_interest / 100
    return [{"init": g["init"], "freeze": g["freeze"], "fraction": g["fraction"], "metric": metric, "pairs": g["n"],
             "sd": g["std"], "seeds": seeds, "alpha": alpha, "detectable": min_detectable_gain(g["std"], seeds, alpha),
             "effect": effect, "seeds_for_effect": seeds_needed(effect, g["std"], alpha)}
            for g in gain_table(rows, metric) if g["n"] >= 2]


def summary_line(plan: dict) -> str:
    """One line: 'plan: 4 pretraining, 20 tuning, 50 final runs (10 of them tuning runs; 6 finished): 64 to train;
    about 3.2 min of training (calibration); 1.2 GB to write'."""
    runs = plan["runs"]
    shared = f"{runs['final']['tuning_runs']} of them tuning runs; " if runs["final"]["tuning_runs"] else ""
    return (f"plan: {runs['pretraining']['planned']} pretraining, {runs['tuning']['planned']} tuning, "
            f"{runs['final']['planned']} final runs ({shared}{runs['finished']} finished): "
            f"{runs['to_train']} to train; {per_target(runs)}"
            f"about {words(plan['time']['seconds'])} of training ({plan['time']['source']}"
            f"{', on a busy machine' if plan['time']['warning'] else ''}); "
            f"{size_words(plan['disk']['bytes'])} to write")



def per_target(runs: dict) -> str:
    """'caltech256: 24 runs (12 done), audiofolder:data/esc50: 24 runs; ' for a study, else ''."""
    if "targets" not in runs:
        return ""
    return ", ".join(f"{name}: {row['runs']} runs" + (f" ({row['finished']} done)" if row["finished"] else "")
                     for name, row in runs["targets"].items()) + "; "


def format_plan(plan: dict) -> str:
    """The plan in words, as `audio2image plan` prints it."""
    parallel = plan["parallel"]
    target = (f"targets {', '.join(plan['target'])}" if isinstance(plan["target"], list)
              else f"target {plan['target']}")
    head = (f"plan for {plan['experiment']}: {plan['backbone']}, {target}, device {plan['device']}, "
            f"{parallel} run{'s' if parallel != 1 else ''} at a time")
    lines = [head, *_run_lines(plan["runs"]), *_time_lines(plan["time"]), *_disk_lines(plan),
             *_power_lines(plan["power"])]
    return "\n".join(lines)


def _run_lines(runs: dict) -> list[str]:
    final, tune = runs["final"], runs["tune_seeds"]
    tuning = (f"{runs['settings']} settings x {runs['cells']} cells on seed{'s' if len(tune) > 1 else ''} "
              f"{', '.join(map(str, tune))}" if tune else "none (one setting)")
    lines = [f"  pretraining {_runs(runs['pretraining'])}: "
             + (", ".join(Path(f).name for f in runs["pretraining"]["folders"]) or "none"),
             f"  tuning      {_runs(runs['tuning'])}: {tuning}",
             f"  final       {_runs(final)}: {runs['seeds']} seeds x {runs['cells']} cells"
             + (f", {final['tuning_runs']} of them tuning runs" if final["tuning_runs"] else "")]
    if final["undecided_cells"]:
        lines.append(f"              the settings of {final['undecided_cells']} cells are chosen after tuning, the "
                     f"ids of their {final['decided_after_tuning']} runs then")
    lines.append(f"  to train    {runs['to_train']} runs")
    if "targets" in runs:
        lines.append("  per target: runs (finished), to train; its files")
        lines += [f"    {name}: {row['runs']} ({row['finished']}), {row['to_train']}; {row['folder']}"
                  for name, row in runs["targets"].items()]
    lines.append("  per init: tuning (finished), final (finished)")
    return lines + [f"    {init}: {row['tuning']} ({row['tuning_finished']}), {row['final']} ({row['final_finished']})"
                    for init, row in runs["per_init"].items()]


def _runs(kind: dict) -> str:
    return f"{kind['planned']:>3} runs, {kind['finished']} finished"


def _time_lines(timing: dict) -> list[str]:
    here = " on this machine" if CALIBRATED in timing["source"] else ""
    lines = [f"time: about {words(timing['seconds'])} of training, from {timing['source']}{here}",
             "  " + ", ".join(f"{name} {words(seconds)}" for name, seconds in timing["phases"].items()),
             f"  not included: {timing['not_included']}"]
    return lines + ([f"  {timing['warning']}"] if timing["warning"] else [])


def _disk_lines(plan: dict) -> list[str]:
    disk = plan["disk"]
    stores = ", ".join(f"{side} {plan['stores'][side]['dataset']} {size_words(count)}"
                       for side, count in disk["stores"].items() if count)
    each = ", ".join(f"{key} {size_words(count)} each" for key, count in sorted(disk["checkpoint_bytes"].items()))
    return [f"disk: about {size_words(disk['bytes'])} to write",
            f"  stores {size_words(sum(disk['stores'].values()))}" + (f": {stores}" if stores else ""),
            f"  best.pt files {size_words(disk['checkpoints'])}: {each}",
            f"  not included: {disk['not_included']}"]


def _power_lines(power: list[dict] | None) -> list[str]:
    if not power:
        return ["power: no results yet (after a first sweep, the observed spread of its paired gains gives it)"]
    first = power[0]
    metrics = sorted({row["metric"] for row in power})
    lines = [f"power at {first['seeds']} seeds ({', '.join(metrics)}, paired with random, 80% power at alpha "
             f"{first['alpha']:.3g}), from the sd of the finished runs' paired differences:"]
    for row in power:
        seeds = row["seeds_for_effect"]
        needed = "no spread yet" if math.isnan(seeds) else ("more than 1000" if math.isinf(seeds) else f"{seeds:.0f}")
        target = f"{row['target']} ({row['metric']}): " if "target" in row else ""
        lines.append(f"  {target}{row['init']}, fraction {row['fraction']:g}, freeze {row['freeze']}: "
                     f"sd {100 * row['sd']:.2g} "
                     f"points over {row['pairs']} pairs; detects {_points(row['detectable'])}; seeds to detect "
                     f"{100 * row['effect']:g} points: {needed}")
    return lines


def _points(gain: float) -> str:
    return "nothing (no spread yet)" if math.isnan(gain) else f"a gain of {100 * gain:.2g} points"
