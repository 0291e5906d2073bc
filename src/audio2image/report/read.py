"""Reading an experiment folder for the report: the config, results.csv, run folders, the datasets' facts.

Everything is read from the files the sweep wrote; a missing or torn file reads as "nothing yet", so a partial
experiment still gets a report.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import yaml

from audio2image.config import BACKBONE_FILE, PRETRAIN_DIR, PRETRAINED_SIDES, SELECTION_FILE, SIDES, Config, keys_for
from audio2image.datasets.registry import DATASETS
from audio2image.report.text import pct
from audio2image.util import read_json_or_none

INT_COLUMNS = ("seed", "best_epoch", "epochs_run", "pretrain_seed", "train_items", "threads")
TEXT_COLUMNS = ("run_id", "stage", "dataset", "init", "freeze", "status", "precision")
DATASETS_FILE = "datasets.json"  # written by the sweep (sweep/__init__.py)


def experiment_facts(exp: Path, config: dict, runs: Path | None = None) -> dict[str, dict]:
    """Per side ("source", "target", and "control" where there is one): dataset, modality and task, from what the
    sweep recorded of its stores (datasets.json), else from the runs' results, else from the registry by the
    config's dataset names. `runs`: the folder of the run folders, where it is not `exp` (a study's target's files
    are in E/targets/<slug>, its runs in E)."""
    recorded = read_json_or_none(exp / DATASETS_FILE) or {}
    facts = {}
    for side in SIDES:
        name = config.get(side) or getattr(Config, side)  # an old config without the key: the default
        if not name:
            continue  # no control
        known = DATASETS.get(name)
        fact = {"dataset": name, "modality": known.modality if known else "unknown",
                "task": (known.task if known else None) or _task_from_runs(Path(runs or exp), side)}
        fact.update(recorded.get(side) or {})
        facts[side] = fact
    return facts


def _task_from_runs(exp: Path, side: str) -> str:
    """The task a side's runs recorded in result.json ("unknown" before any finished)."""
    folders = pretrain_dirs(exp, side) if side in PRETRAINED_SIDES else sorted((exp / "transfer").glob("*/"))
    for folder in folders:
        result = read_json_or_none(folder / "result.json") or {}
        if result.get("task"):
            return result["task"]
    return "unknown"


def pretrain_dirs(exp: Path, side: str = "source") -> list[Path]:
    """The folders of a side's pretraining runs (E/pretrain/<side>-seed<S>), by seed."""
    found = [(_seed_of(d.name), d) for d in (exp / PRETRAIN_DIR).glob(f"{side}-seed*/") if d.is_dir()]
    return [d for seed, d in sorted(found) if seed is not None]


def _seed_of(name: str) -> int | None:
    try:
        return int(name.rpartition("-seed")[2])
    except ValueError:
        return None


def read_config(path: Path) -> dict:
    """The resolved experiment config (a flat mapping), or {} when the file is absent."""
    if not path.is_file():
        return {}
    return yaml.safe_load(path.read_text()) or {}


def read_results(path: Path) -> list[dict]:
    """results.csv as typed rows: fraction float, counts int (seed, epochs, training items, threads; None when
    empty), metrics float (nan when empty)."""
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        rows = []
        for raw in csv.DictReader(handle):
            try:
                rows.append(_typed(raw))
            except (TypeError, ValueError):
                continue  # a torn or foreign line must not stop the report; the run shows up as missing
        return rows


def rows_with_runs(exp: Path, rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """The rows of results.csv whose run folder still holds its result (the files are the truth), and the rest:
    a run deleted or damaged since results.csv was written counts as missing, not as completed."""
    kept, gone = [], []
    for row in rows:
        run_id = row.get("run_id")
        (kept if not run_id or (exp / "transfer" / str(run_id) / "result.json").is_file() else gone).append(row)
    return kept, gone


def sweep_rows(exp: Path, config: dict, runs: Path | None = None) -> tuple[list[dict], list[dict], list[str]]:
    """The experiment's transfer rows, the rows of results.csv whose run is gone (see `rows_with_runs`), and lines
    for the report saying what was read beyond results.csv. `runs`: see `experiment_facts`.

    results.csv is written when a sweep ends, so a sweep stopped earlier has finished runs it does not list: those
    of the experiment's own grid are read from their folders (result.json, as results.csv would hold them), with
    each cell's setting chosen on validation (E/selection.json); a cell with no choice yet keeps its runs only if
    they share one setting (a selection stopped midway has tuning runs of several).
    """
    listed = read_results(exp / "results.csv")
    rows, gone = rows_with_runs(Path(runs or exp), listed)
    found, undecided = _unlisted_rows(exp, config, {row.get("run_id") for row in listed}, Path(runs or exp))
    notes = []
    if found:
        grid = [len(_grid_values(config, key)) for key in ("fractions", "inits", "seeds", "freezes")]
        written = (f"lists {len(listed)} run{'s' if len(listed) != 1 else ''}" if (exp / "results.csv").is_file()
                   else "is not written yet")
        notes.append(f"This report shows a partial sweep: results.csv, which the sweep writes when it ends, {written}; "
                     f"the {len(found)} finished run{'s' if len(found) != 1 else ''} it does not list are read from "
                     f"their folders (transfer/*/result.json). {len(rows) + len(found)} of the grid's "
                     f"{math.prod(grid)} runs have finished.")
    if undecided:
        cells = "; ".join(f"fraction {pct(f)}, init {i}, freeze {z}" for f, i, z in undecided)
        notes.append(f"Left out: the runs of {len(undecided)} cell{'s' if len(undecided) != 1 else ''} that tried "
                     f"several settings with none chosen yet (the sweep stopped during selection): {cells}.")
    return rows + found, gone, notes


def _unlisted_rows(exp: Path, config: dict, listed: set, runs: Path) -> tuple[list[dict], list[tuple]]:
    """The finished runs of the experiment's grid and chosen settings that results.csv does not list, as its rows;
    and the cells (fraction, init, freeze) left out for having runs of several settings and no choice yet."""
    grid = {"fraction": {float(f) for f in _grid_values(config, "fractions")},
            "init": {_result_name(i) for i in _grid_values(config, "inits")},
            "seed": {int(s) for s in _grid_values(config, "seeds")},
            "freeze": set(_grid_values(config, "freezes"))}
    chosen = _chosen_settings(exp)
    by_cell: dict[tuple, list[dict]] = {}
    for run_dir in sorted((runs / "transfer").glob("*/")):
        if run_dir.name in listed:
            continue
        row = _finished_row(run_dir)
        if (row is None or any(row.get(key) not in values for key, values in grid.items())
                or row.get("dataset") not in ("", config.get("target") or Config.target)
                or not _same_run_keys(run_dir, config)):
            continue  # unfinished, or not a run of this experiment's grid (an earlier config's)
        by_cell.setdefault((row["fraction"], row["init"], row["freeze"]), []).append(row)
    found, undecided = [], []
    for cell, rows in by_cell.items():
        if cell in chosen:
            found += [row for row in rows if chosen[cell] is not None and _setting(row) == chosen[cell]]
        elif len({_setting(row) for row in rows}) == 1:
            found += rows
        else:
            undecided.append(cell)
    return found, undecided


def _grid_values(config: dict, key: str) -> list:
    return config.get(key) or getattr(Config(), key)


def _result_name(init: str) -> str:
    """An init as results name it: "audio" for "audio:RUN_DIR", a checkpoint with its path (sweep/grid.py)."""
    from audio2image.training.initspec import parse_init

    try:
        spec = parse_init(init)
    except ValueError:
        return init
    return init if spec.base == "checkpoint" else spec.name


def _finished_row(run_dir: Path) -> dict | None:
    """A finished run's row as results.csv holds it, typed as `read_results` reads it; None when the run has not
    finished or its result.json is torn."""
    from audio2image.sweep.results import result_row

    if read_json_or_none(run_dir / "result.json") is None:
        return None
    try:
        return _typed({k: "" if v is None else str(v) for k, v in (result_row(run_dir) or {}).items()})
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _chosen_settings(exp: Path) -> dict[tuple, tuple]:
    """(fraction, init, freeze) -> (lr, weight decay) chosen on validation (E/selection.json); a cell whose every
    setting failed maps to None (it has no runs to report)."""
    chosen = {}
    for cell in (read_json_or_none(exp / SELECTION_FILE) or {}).get("cells") or []:
        try:
            key = (float(cell["fraction"]), _result_name(str(cell["init"])), str(cell.get("freeze") or "none"))
            chosen[key] = tuple(float(v) for v in cell["chosen"]) if cell.get("chosen") else None
        except (KeyError, TypeError, ValueError):
            continue
    return chosen


def _setting(row: dict) -> tuple | None:
    values = (row.get("lr"), row.get("weight_decay"))
    return tuple(float(v) for v in values) if all(isinstance(v, float) and math.isfinite(v) for v in values) \
        else None


def _same_run_keys(run_dir: Path, config: dict) -> bool:
    """Whether a run was made with the experiment's target and transfer keys (those of its identity but the
    setting, which each cell chooses): a run of an earlier config under the same name, or of another target of a
    study, was not. A run without its config.yaml passes."""
    saved = read_config(run_dir / "config.yaml")
    known = DATASETS.get(config.get("target") or Config.target)
    if not saved or known is None:
        return True
    keys = [k for k in keys_for(known.modality, "transfer") if k not in ("transfer_lr", "transfer_weight_decay")]
    keys += ["target", "target_root"]
    return all(saved.get(k) == config.get(k) for k in keys if k in config)


def _typed(raw: dict) -> dict:
    row = {}
    for key, value in raw.items():
        if key is None:
            continue
        value = (value or "").strip()
        if key in TEXT_COLUMNS:
            row[key] = value
        elif key in INT_COLUMNS:
            row[key] = int(float(value)) if value else None
        else:
            row[key] = _maybe_float(value)
    row["freeze"] = row.get("freeze") or "none"
    if row.get("seed") is None or not math.isfinite(row.get("fraction", math.nan)):
        raise ValueError("a run row needs fraction and seed")
    return row


def _maybe_float(value: str):
    """Numbers as float (empty: nan); any other text (a column we do not know) stays as it is."""
    if not value:
        return math.nan
    try:
        return float(value)
    except ValueError:
        return value


def read_jsonl(path: Path) -> list[dict]:
    """One dict per line; a torn last line (a run killed mid-write) is skipped."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def transfer_curves(exp: Path, rows: list[dict], metric: str, shared: bool = False) -> list[dict]:
    """Per transfer run folder: its identity (result.json, else run.json, else results.csv) and validation curve.
    `shared`: `exp` holds the runs of other targets too (a study's), so only the rows' runs are read."""
    by_id = {r.get("run_id"): r for r in rows}
    curves = []
    for run_dir in sorted((exp / "transfer").glob("*/")):
        if (by_id or shared) and run_dir.name not in by_id:
            continue  # a tuning run of a setting not chosen (or another target's): not one of these results
        result = read_json_or_none(run_dir / "result.json") or {}
        ident = result.get("run") or read_json_or_none(run_dir / "run.json") or by_id.get(run_dir.name)
        lines = [m for m in read_jsonl(run_dir / "metrics.jsonl") if m.get(metric) is not None]
        if not ident or not lines or ident.get("fraction") is None:
            continue
        init = ident.get("init_name", ident.get("init", "?"))  # "audio", as in results.csv, not "audio:RUN_DIR"
        curves.append({"fraction": float(ident["fraction"]), "init": str(init),
                       "freeze": str(ident.get("freeze") or "none"), "seed": ident.get("seed"),
                       "epochs": [m["epoch"] for m in lines], "values": [float(m[metric]) for m in lines]})
    return curves


def missing_runs(cells: list[dict]) -> list[tuple]:
    """(fraction, init, seed, freeze) of every grid point with no row in results.csv."""
    return [(c["fraction"], c["init"], s, c["freeze"]) for c in cells for s in c["seeds_missing"]]


def backbone_facts(exp: Path, config: dict) -> dict:
    """The backbone's description (name, stages, head, first layer, outputs) as the sweep recorded it
    (backbone.json); for an experiment from before that file, described anew (imports timm)."""
    recorded = read_json_or_none(exp / BACKBONE_FILE)
    if recorded:
        return recorded
    from audio2image.config_checks import parse_backbone_args
    from audio2image.training.backbone import describe

    return describe(config.get("backbone") or Config.backbone, parse_backbone_args(config.get("backbone_args") or ""))


def first_layer_weights(exp: Path, config: dict, source: dict, backbone: dict) -> dict[str, np.ndarray]:
    """The first layer's weights to show ([out, in, h, w]): the backbone's random init, the pretrained checkpoint,
    the published weights if on disk. `source`: the source's facts (see `experiment_facts`), which name the
    pretrained panel; `backbone`: `backbone_facts`."""
    import torch

    from audio2image.training.backbone import Backbone
    from audio2image.training.model import InitError
    from audio2image.training.published import published_path, read_weights

    key = backbone["first_layer"]
    args = tuple(sorted((backbone.get("args") or {}).items()))
    random = Backbone(backbone["backbone"], args=args).build(2, seed=0)
    filters = {"random init": random.state_dict()[key].detach().numpy()}
    first = pretrain_dirs(exp, "source")[:1]
    best = _state_dict(first[0] / "best.pt") if first else None
    if best is not None and key in best:
        filters[f"{source['modality']} ({source['dataset']}) pretrained"] = best[key].numpy()
    try:
        published = read_weights(published_path(backbone["backbone"], config.get("imagenet_weights") or ""))
    except InitError:  # not on this machine (or unreadable): the panel is left out, and the text says so
        published = {}
    if isinstance(published.get(key), torch.Tensor):
        filters["imagenet"] = published[key].float().numpy()
    return filters


def _state_dict(path: Path):
    """A state dict from a checkpoint ({"model": ...}) or a bare one; None when absent or unreadable."""
    from audio2image.training.files import read_checkpoint

    if not path.is_file():
        return None
    try:
        value = read_checkpoint(path)
    except Exception:  # noqa: BLE001 - a broken checkpoint only loses one panel of one figure
        return None
    return value.get("model", value) if isinstance(value, dict) else None
