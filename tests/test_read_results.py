"""results.csv read back with the types the runs wrote: counts as ints, not floats."""
from __future__ import annotations

import json

from audio2image.report.read import read_results
from audio2image.sweep.results import IDENTITY, OUTCOME, write_results


def finished_run(folder, seed: int) -> dict:
    run = {"stage": "transfer", "dataset": "caltech256", "fraction": 0.5, "init": "audio:runs/x/pretrain/source-seed0",
           "init_name": "audio", "seed": seed, "freeze": "none", "run_id": folder.name, "lr": 0.01,
           "weight_decay": 0.0005, "pretrain_seed": 0}
    result = {"status": "completed", "best_epoch": 3, "epochs_run": 4, "train_items": 90, "threads": 2,
              "precision": "fp32", "val": {"loss": 1.2, "top1": 0.5}, "test": {"loss": 1.3, "top1": 0.45},
              "wall_seconds": 12.5, "run": run}
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps(result))
    return {**run, **result}


def test_every_count_reads_back_as_an_int(tmp_path):
    written = [finished_run(tmp_path / "transfer" / f"run{seed}", seed) for seed in (0, 1)]
    write_results([tmp_path / "transfer" / f"run{seed}" for seed in (0, 1)], tmp_path / "results.csv")
    rows = read_results(tmp_path / "results.csv")
    assert [row["train_items"] for row in rows] == [90, 90]
    for column in IDENTITY + OUTCOME:  # whatever the run wrote as a whole number comes back as one
        if isinstance(written[0].get(column), int):
            assert [type(row[column]) for row in rows] == [int, int], column
    assert rows[0]["fraction"] == 0.5 and rows[0]["test_top1"] == 0.45 and rows[1]["seed"] == 1
