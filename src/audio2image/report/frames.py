"""An experiment's results as pandas DataFrames, read and computed by the report's own code (report.py's
`open_experiment` and `verdict_rows`), so that every number equals the report's.

    >>> import audio2image
    >>> runs = audio2image.load_results("runs/demo")     # one row per run: its settings, status, metrics, folder
    >>> curves = audio2image.load_curves("runs/demo")    # one row per run, epoch and metric (metrics.jsonl)
    >>> gains = audio2image.load_gains("runs/demo")      # the table of "## The answer": gain over random per cell

Metrics are fractions, as the run files hold them (0.734: 73.4% top-1 accuracy); gains too (0.05: 5 points).
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from audio2image.config import PRETRAINED_SIDES, Config
from audio2image.report.read import missing_runs, pretrain_dirs, read_config, read_jsonl
from audio2image.report.report import BASELINE, Experiment, experiment_folder, verdict_rows
from audio2image.report.study import open_targets
from audio2image.report.stats import cell_table
from audio2image.util import read_json_or_none

# a run's settings: what tells it from the experiment's other runs (`side`: source or control for a pretraining,
# target for a transfer run)
SETTINGS = ["stage", "side", "run_id", "dataset", "fraction", "init", "seed", "freeze", "lr", "weight_decay",
            "pretrain_seed"]
INTS = ("seed", "pretrain_seed", "best_epoch", "epochs_run", "train_items", "threads")
FLOATS = ("fraction", "lr", "weight_decay", "wall_seconds")
NOT_FINISHED = "not finished"  # a pretraining folder without result.json (running, or stopped): the report's words
MISSING = "missing"  # a planned transfer run without a result


def load_results(experiment: str | Path) -> pd.DataFrame:
    """One row per run of the experiment folder: its pretraining runs (stage "pretrain", side source or control)
    and the transfer runs the report counts (stage "transfer": results.csv, the finished runs a stopped sweep has
    not listed yet, and every planned run without a result with status "missing"), with their settings, status
    (completed, diverged, not finished, missing), metrics and run folder. The tuning runs of settings not chosen
    are not rows (as in results.csv); their curves are in `load_curves`. A study of several targets: each
    target's transfer rows, named in the `target` column."""
    targets = open_targets(experiment)
    first = next(iter(targets.values()))
    owner = {side: next((found for found in targets.values() if side in found.facts), first)
             for side in PRETRAINED_SIDES}  # the control's facts are in the targets of its modality
    rows = [_pretraining_row(owner[side], side, run_dir) for side in PRETRAINED_SIDES
            for run_dir in pretrain_dirs(first.runs, side)]
    return _typed(rows + [row for name, found in targets.items() for row in _transfer_rows(found, name)])


def _transfer_rows(found: Experiment, name: str) -> list[dict]:
    """The report's transfer rows and missing runs of the target `name`, in the report's order (fraction, freeze,
    init, seed)."""
    target = found.config.get("target") or found.facts["target"]["dataset"]
    rows = [{**row, "stage": "transfer", "side": "target", "target": name,
             "run_dir": str(found.runs / "transfer" / row["run_id"]) if row.get("run_id") else None}
            for row in found.rows]
    gone = {(r["fraction"], r["init"], r["seed"], r["freeze"]): r for r in found.gone}  # counted as missing
    metric = found.kind.test_metrics[0]
    for fraction, init, seed, freeze in missing_runs(cell_table(found.rows, metric, found.grid)):
        run_id = (gone.get((fraction, init, seed, freeze)) or {}).get("run_id") or None
        rows.append({"stage": "transfer", "side": "target", "target": name, "run_id": run_id, "dataset": target,
                     "fraction": fraction, "init": init, "seed": seed, "freeze": freeze, "status": MISSING,
                     "run_dir": str(found.runs / "transfer" / run_id) if run_id else None})
    order = {init: k for k, init in enumerate(found.inits)}
    return sorted(rows, key=lambda r: (r["fraction"], r["freeze"], order.get(r["init"], len(order)), r["seed"]))


def _pretraining_row(found: Experiment, side: str, run_dir: Path) -> dict:
    """A pretraining run as a row: its side, seed and settings, and its result's outcome and metrics."""
    saved = read_config(run_dir / "config.yaml") or found.config
    seed = int(run_dir.name.rpartition("-seed")[2])  # pretrain_dirs keeps only folders named so
    row = {"stage": "pretrain", "side": side, "run_id": (read_json_or_none(run_dir / "run.json") or {}).get("run_id"),
           "dataset": found.facts.get(side, {}).get("dataset"), "fraction": 1.0, "init": BASELINE, "seed": seed,
           "freeze": "none", "pretrain_seed": seed, "status": NOT_FINISHED, "run_dir": str(run_dir),
           # a key the saved config lacks (made by an older version) had its default
           "lr": saved.get("pretrain_lr", Config.pretrain_lr),
           "weight_decay": saved.get("pretrain_weight_decay", Config.pretrain_weight_decay)}
    result = read_json_or_none(run_dir / "result.json")
    if not isinstance(result, dict):
        return row
    from audio2image.sweep.results import IDENTITY, result_row  # here: the sweep package imports torch

    try:
        read = result_row(run_dir) or {}
    except (KeyError, TypeError, AttributeError):  # a result without the run's identity: its outcome alone
        read = {"status": result.get("status")}
    outcome = {k: v for k, v in read.items() if v not in ("", None) and k not in IDENTITY}
    return {**row, **outcome, "run_id": read.get("run_id") or row["run_id"], "status": outcome.get("status", "unknown")}


def _typed(rows: list[dict]) -> pd.DataFrame:
    """The rows as a frame with a fixed order of columns (settings, outcome, metrics, wall time, folder) and types:
    whole numbers as nullable Int64, numbers as float64 (nan where missing), the rest as text."""
    from audio2image.sweep.results import OUTCOME

    seen = list(dict.fromkeys(key for row in rows for key in row))
    metrics = [k for k in seen if k.startswith(("val_", "test_"))]
    columns = SETTINGS + list(OUTCOME) + metrics + ["wall_seconds"]
    columns += [k for k in seen if k not in columns and k != "run_dir"] + ["run_dir"]
    frame = pd.DataFrame(rows, columns=columns)
    for column in columns:
        values = frame[column]
        if column in INTS:
            frame[column] = pd.to_numeric(values, errors="coerce").round().astype("Int64")
        elif column in FLOATS or column in metrics or (values.notna().any() and values.dropna().map(_numeric).all()):
            frame[column] = pd.to_numeric(values, errors="coerce").astype("float64")
        else:
            frame[column] = values.astype("string")
    return frame


def load_curves(experiment: str | Path) -> pd.DataFrame:
    """Every run's metrics.jsonl as a long frame: one row per run, epoch and metric (training loss, validation
    metrics, learning rate, seconds), with the run's stage, side, run_id, init, fraction, seed, freeze, lr and
    weight_decay. Every run folder is read, tuning runs of settings not chosen included: join with `load_results`
    on run_id to keep the report's runs."""
    exp = experiment_folder(experiment)
    folders = [(side, d) for side in PRETRAINED_SIDES for d in pretrain_dirs(exp, side)]
    folders += [("target", d) for d in sorted((exp / "transfer").glob("*/"))]
    columns = {name: [] for name in ("stage", "side", "run_id", "init", "fraction", "seed", "freeze", "lr",
                                      "weight_decay", "epoch", "metric", "value")}
    for side, run_dir in folders:
        ident = _identity(side, run_dir)
        for line in read_jsonl(run_dir / "metrics.jsonl"):
            for metric, value in line.items():
                if metric == "epoch" or not _number(value) or not _number(line.get("epoch")):
                    continue
                for name, item in (*ident.items(), ("epoch", line["epoch"]), ("metric", metric), ("value", value)):
                    columns[name].append(item)
    frame = pd.DataFrame(columns)
    for name in ("stage", "side", "run_id", "init", "freeze", "metric"):
        frame[name] = frame[name].astype("string")
    for name in ("fraction", "lr", "weight_decay", "value"):
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
    for name in ("seed", "epoch"):
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("Int64")
    return frame


def _identity(side: str, run_dir: Path) -> dict:
    """A run's identifying values for its curves, from result.json, else run.json (written when it starts)."""
    ident = (read_json_or_none(run_dir / "result.json") or {}).get("run") or read_json_or_none(run_dir / "run.json")
    ident = ident if isinstance(ident, dict) else {}
    pretraining = side != "target"
    return {"stage": "pretrain" if pretraining else "transfer", "side": side,
            "run_id": str(ident.get("run_id") or run_dir.name), "init": ident.get("init_name", ident.get("init")),
            "fraction": ident.get("fraction"), "seed": ident.get("seed"), "freeze": ident.get("freeze"),
            "lr": ident.get("lr"), "weight_decay": ident.get("weight_decay")}


def _numeric(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(value) -> bool:
    """A finite number (a bool is not one)."""
    return _numeric(value) and math.isfinite(value)


GAIN_COLUMNS = {  # the report's name of each value (verdict.verdicts) -> its column
    "init": "init", "freeze": "freeze", "fraction": "fraction", "metric": "metric", "baseline": "baseline",
    "verdict": "verdict", "mean": "gain", "ci_low": "ci_low", "ci_high": "ci_high", "std": "std", "n": "n",
    "p": "p", "p_holm": "p_holm", "significant": "significant", "untested": "untested", "alpha": "alpha",
    "detectable": "detectable", "effect": "effect", "seeds_for_effect": "seeds_for_effect",
    "control": "control_gain", "seeds_for_control": "seeds_for_control"}
GAIN_TEXT = ("init", "freeze", "metric", "baseline", "verdict", "untested")


def load_gains(experiment: str | Path, metric: str | None = None) -> pd.DataFrame:
    """The report's answer table: per pretrained init, freeze and fraction, the gain over random paired by seed
    (`gain`, its 95% interval `ci_low` to `ci_high`, the sd of the differences and `n` pairs), the paired t-test's
    `p` and Holm-adjusted `p_holm`, `verdict` (gain, loss, no difference, not tested, and why in `untested`),
    P(init > random) with its bootstrap interval (`p_improvement`, `_low`, `_high`), the smallest gain the test
    could detect (`detectable`, at level `alpha`), and the seeds that would detect `effect` (effect_of_interest)
    and the positive control's gain (`control_gain`). `metric`: the report's (by default: test_top1, or test_roc_auc
    for a tagging target), its others (test_pr_auc), or another test metric the runs hold (test_top5, ...). A
    study of several targets: each target's table, named in a first column `target`."""
    targets = open_targets(experiment)
    if len(targets) == 1:
        return _gains(next(iter(targets.values())), metric)
    frame = pd.concat([_gains(found, metric).assign(target=name) for name, found in targets.items()],
                      ignore_index=True)
    frame["target"] = frame["target"].astype("string")
    return frame[["target", *(column for column in frame.columns if column != "target")]]


def _gains(found: Experiment, metric: str | None) -> pd.DataFrame:
    """One target's answer table (`load_gains`)."""
    metrics = list(found.kind.test_metrics)  # the report's, first its primary one
    metrics += sorted({k for row in found.rows for k in row if k.startswith("test_") and k != "test_loss"}
                      - set(metrics))  # a loss is better lower: its "gain" would read backwards
    metric = metric or metrics[0]
    if metric not in metrics:
        raise ValueError(f"metric {metric!r} is not a test metric of {found.path}'s runs; use one of "
                         f"{', '.join(metrics)}")
    rows = []
    for v in verdict_rows(found, metric):
        improvement = v["improvement"]
        rows.append({**{column: v[key] for key, column in GAIN_COLUMNS.items()}, "p_improvement": improvement["p"],
                     "p_improvement_low": improvement["ci_low"], "p_improvement_high": improvement["ci_high"],
                     "seeds": list(v["seeds"])})
    frame = pd.DataFrame(rows, columns=[*GAIN_COLUMNS.values(), "p_improvement", "p_improvement_low",
                                        "p_improvement_high", "seeds"])
    types = {**{column: "float64" for column in frame.columns}, "n": "int64", "significant": "bool",
             "seeds": "object", **{column: "string" for column in GAIN_TEXT}}
    return frame.astype(types)
