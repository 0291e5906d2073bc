"""results.csv: one row per transfer run, read back from the run folders (the files are the truth)."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import yaml

from audio2image.targets import target_name
from audio2image.training.taskkinds import TASK_KINDS, kind_or_classification
from audio2image.util import atomic_write_text, read_json

# target: as `targets` names it; lr and weight_decay: the setting chosen on validation; pretrain_seed: the pretraining
# run a pretrained init loads
IDENTITY = ["target", "run_id", "stage", "dataset", "fraction", "init", "seed", "freeze", "lr", "weight_decay",
            "pretrain_seed"]
OUTCOME = ["status", "best_epoch", "epochs_run", "train_items", "threads", "precision"]


def result_row(run_dir: Path) -> dict | None:
    path = Path(run_dir) / "result.json"
    if not path.is_file():
        return None
    result = read_json(path)
    run = result["run"]
    row = {k: run.get(k, "") for k in IDENTITY}
    row["target"] = _target_of(Path(run_dir))
    row["init"] = run.get("init_name", run.get("init"))
    row.update({k: result.get(k, "") for k in OUTCOME})
    for split in ("val", "test"):
        for key, value in result.get(split, {}).items():
            row[f"{split}_{key}"] = value
    row["wall_seconds"] = result.get("wall_seconds", "")
    return row


def _target_of(run_dir: Path) -> str:
    """The run's target as `targets` names it, from the config it ran with ("" without one)."""
    try:
        values = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return ""
    return target_name(values.get("target") or "", values.get("target_root") or "") if isinstance(values, dict) else ""


def columns_for(rows: list[dict]) -> list[str]:
    kinds = {kind_or_classification(_task_of(row)) for row in rows} or {kind_or_classification(None)}
    metrics = [f"{split}_{m}" for split in ("val", "test") for kind in sorted(kinds, key=lambda k: k.name)
               for m in ("loss", *kind.metric_names)]
    return IDENTITY + OUTCOME + metrics + ["wall_seconds"]


def _task_of(row: dict) -> str | None:
    """The task whose selection metric the row holds; None for a run that stopped before evaluating."""
    return next((name for name, kind in TASK_KINDS.items()
                 if kind.validation_metric in row or f"test_{kind.selection_metric}" in row), None)


def write_results(run_dirs: list[Path], path: Path, target: str = "") -> list[dict]:
    """Write results.csv for the finished runs among `run_dirs` (in grid order); returns the rows. `target`: the
    name of their target in the experiment (a run made before under another spelling of its folder keeps its id,
    and is this target's)."""
    rows = [{**row, **({"target": target} if target else {})} for row in map(result_row, run_dirs) if row is not None]
    write_rows(rows, path)
    return rows


def write_rows(rows: list[dict], path: Path) -> None:
    """results.csv of these rows (a study's: every target's, their metrics' columns together)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns_for(rows), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())
