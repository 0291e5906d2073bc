"""Each init's transfer setting chosen on validation: a fair fight between inits (Kornblith et al. 2019).

A pretrained and a random network rarely share their best learning rate, so comparing both at one can make or hide a
gain. Each cell of the grid (fraction, init, freeze) gets its own (learning rate, weight decay) from
transfer_lrs x transfer_weight_decays: every setting is trained on the tuning seeds (the first tune_seeds of
`seeds`), the one with the best mean validation metric (the metric each run picks its best epoch by) is chosen, and
the chosen setting then runs on every seed; those runs, and only those, are the experiment's results. Per fraction
too, because the best learning rate moves with the amount of data (fewer steps, noisier gradients).

Selection reads validation metrics only: `validation_row` takes a run's identity and its best validation value
from result.json and nothing else, so no test metric can enter a choice. The choices are written to
E/selection.json for the report; tuning runs are ordinary run folders, so an interrupted selection resumes, a
grown setting list trains only the new settings, and a chosen setting's tuning runs count as its runs.

    >>> chosen = run_selection(config, store, execute)   # {(fraction, init, freeze): (lr, weight_decay)}
"""
from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np

from audio2image.config import SELECTION_FILE, Config
from audio2image.sweep.grid import cells, transfer_plan
from audio2image.training.initspec import parse_init
from audio2image.util import log, read_json_or_none, write_json

Setting = tuple  # (learning rate, weight decay)


def settings_of(config: Config) -> list[Setting]:
    """Every (learning rate, weight decay) the sweep may choose, learning rate varying slowest."""
    return list(itertools.product(config.transfer_lrs, config.transfer_weight_decays))


def validation_row(run_dir: Path) -> dict | None:
    """A finished run's cell, setting, seed and best validation value (a diverged run: -inf, so it never wins);
    None when the run has not finished. Nothing of the test split is read into it."""
    result = read_json_or_none(Path(run_dir) / "result.json")
    if result is None:
        return None
    run, metric = result.get("run", {}), result.get("selection_metric", "")
    value = (result.get("val") or {}).get(metric.removeprefix("val_"))
    completed = result.get("status") == "completed" and value is not None and math.isfinite(value)
    return {"fraction": run.get("fraction"), "init": run.get("init_name", run.get("init")),
            "freeze": run.get("freeze"), "seed": run.get("seed"), "lr": run.get("lr"),
            "weight_decay": run.get("weight_decay"), "metric": metric, "status": result.get("status"),
            "value": float(value) if completed else -math.inf}


def choose(rows: list[dict], settings: list[Setting]) -> list[dict]:
    """Per cell (fraction, init, freeze) of `rows` (validation rows): each setting's mean validation value over
    its seeds and the setting with the best one (ties: the earlier in `settings`). A chosen value at an end of a
    list of several values is flagged: the best may lie beyond the grid."""
    by_cell: dict[tuple, dict] = {}
    for row in rows:
        key = (row["fraction"], row["init"], row["freeze"])
        by_cell.setdefault(key, {}).setdefault((row["lr"], row["weight_decay"]), []).append(row)
    decisions = []
    for (fraction, init, freeze), found in by_cell.items():
        candidates = []
        for setting in settings:
            runs = sorted(found.get(setting, []), key=lambda r: r["seed"])
            values = [r["value"] for r in runs]
            candidates.append({"lr": setting[0], "weight_decay": setting[1], "seeds": [r["seed"] for r in runs],
                               "values": values, "mean": float(np.mean(values)) if values else math.nan,
                               "diverged": sum(1 for r in runs if r["status"] == "diverged")})
        ranked = [c for c in candidates if c["values"] and math.isfinite(c["mean"])]
        best = max(ranked, key=lambda c: c["mean"], default=None)  # max keeps the first of equals
        chosen = (best["lr"], best["weight_decay"]) if best else None
        metric = next(r["metric"] for runs in found.values() for r in runs)
        decisions.append({"fraction": fraction, "init": init, "freeze": freeze, "metric": metric,
                          "candidates": candidates, "chosen": list(chosen) if chosen else None,
                          "edges": edges(chosen, settings)})
    return decisions


def edges(chosen: Setting | None, settings: list[Setting]) -> list[str]:
    """'lowest learning rate', 'highest weight decay', ...: where a chosen value is an end of its list of three or
    more values (of two, every choice is an end: that says nothing, and the report says so once)."""
    if chosen is None:
        return []
    found = []
    for position, noun in ((0, "learning rate"), (1, "weight decay")):
        values = sorted({s[position] for s in settings})
        if len(values) > 2 and chosen[position] in (values[0], values[-1]):
            found.append(f"{'lowest' if chosen[position] == values[0] else 'highest'} {noun}")
    return found


def tuning_plan(config: Config, store: Path, planned: dict | None = None) -> list:
    """The tuning runs: every setting of every cell on the tuning seeds (none when there is one setting: nothing to
    choose); `planned`: the ids of pretraining runs not started yet (grid.resolve_init)."""
    settings = settings_of(config)
    if len(settings) == 1:
        return []
    tune = config.seeds[:config.tune_seeds]
    return [run for setting in settings
            for run in transfer_plan(config, store, {cell: setting for cell in cells(config)}, tune, planned)]


def run_selection(config: Config, store: Path, execute, folder: Path | None = None) -> dict[tuple, Setting]:
    """Train every setting of every cell on the tuning seeds (`execute` runs planned runs), choose on validation,
    write selection.json in `folder` (default: the experiment's; a study's target: its own); returns the chosen
    setting per cell (a cell where every setting failed has none)."""
    settings = settings_of(config)
    tune = config.seeds[:config.tune_seeds]
    if len(settings) == 1:  # nothing to choose: every cell takes the one setting, no tuning runs
        decisions = [{"fraction": f, "init": i, "freeze": z, "candidates": [], "chosen": list(settings[0]),
                      "edges": []} for f, i, z in cells(config)]
    else:
        tuning = tuning_plan(config, store)
        log(f"selection: {len(settings)} settings x {len(cells(config))} cells on tuning seeds "
            f"{', '.join(map(str, tune))}: {len(tuning)} runs")
        execute(tuning)
        rows = [row for row in map(validation_row, [run.run_dir for run in tuning]) if row is not None]
        decisions = choose(rows, settings)
    write_json(Path(folder or config.experiment_dir) / SELECTION_FILE,
               {"settings": [list(s) for s in settings], "tune_seeds": tune, "cells": decisions})
    for d in decisions:
        if d["edges"]:
            log(f"selection: fraction {d['fraction']}, init {d['init']}: the chosen setting is at the "
                f"{' and '.join(d['edges'])} of the grid; the best may lie beyond it")
    return {grid_cell(config, d): tuple(d["chosen"]) for d in decisions if d["chosen"]}


def grid_cell(config: Config, decision: dict) -> tuple:
    """The grid's cell (fraction, init, freeze) of a decision: runs and selection.json name an init as the report
    does ("image"); the grid's cells hold the config's string ("image:RUN_DIR")."""
    cell_init = {parse_init(init).name: init for init in config.inits}
    return decision["fraction"], cell_init.get(decision["init"], decision["init"]), decision["freeze"]


def known_choices(config: Config, tuning: list) -> dict[tuple, Setting | None]:
    """The choices `run_selection` will make, for the cells whose tuning runs (`tuning_plan`) have all finished:
    {cell: setting, or None where every setting failed}; with one setting, every cell's. Reads validation only."""
    settings = settings_of(config)
    if len(settings) == 1:
        return {cell: settings[0] for cell in cells(config)}
    done: dict[tuple, list] = {}  # by cell as `choose` names it: the init by its name, as each run records it
    for run in tuning:
        cell = (run.spec.fraction, run.spec.extra["init_name"], run.spec.freeze)
        done.setdefault(cell, []).append(validation_row(run.run_dir))
    decided = choose([row for found in done.values() if None not in found for row in found], settings)
    return {grid_cell(config, d): tuple(d["chosen"]) if d["chosen"] else None for d in decided}
