"""Every stage is a job, and executors agree: store preparation and pretraining go through the configured executor
like the transfer runs (a local pool process, a Ray task, a submitit job), so on a cluster none of them runs on
the machine that starts the sweep; and with default settings at the same `parallel` every executor's table is the
same (the thread count is resolved once from the config, sweep/executors.run_threads). parallel=1 here: on
the one core a pytest-xdist worker owns, more would only queue."""
from __future__ import annotations

import json
import os

import pytest

from audio2image.config import load_config
from audio2image.sweep import run_sweep
from test_sweep import _rows_without_ids


def sweep(root, data, executor: str):
    config = load_config("configs/tiny.yaml", [f"out_dir={root}", f"data_dir={data}", f"executor={executor}",
                                               "fractions=1.0", "inits=audio", "pretrain_seeds=0", "transfer_epochs=1",
                                               "cka_items=0"])
    summary = run_sweep(config)
    assert summary["finished"] == summary["runs"] == 2
    return root / "tiny"


@pytest.mark.slow
def test_every_stage_runs_in_the_executors_workers_and_every_executor_gives_one_table(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    pytest.importorskip("submitit")
    starts = []
    monkeypatch.setattr(ray, "init", lambda *args, init=ray.init, **kwargs: starts.append(1) or init(*args, **kwargs))
    tables = {}
    for executor in ("local", "ray", "submitit-local"):
        experiment = sweep(tmp_path / executor, tmp_path / "data", executor)  # stores: made by the first
        pretraining = sorted((experiment / "pretrain").iterdir())
        assert [p.name for p in pretraining] == ["source-seed0"]
        for run in [*pretraining, *(experiment / "transfer").iterdir()]:
            result = json.loads((run / "result.json").read_text())
            # the local executor at parallel=1 runs in the sweep's own process, by design; the others never do
            assert result["status"] == "completed" and (executor == "local") == (result["pid"] == os.getpid())
        tables[executor] = _rows_without_ids(experiment / "results.csv")  # one store, so one set of run ids too
    assert len(starts) == 1 and not ray.is_initialized()  # one local Ray for every stage, stopped at the end
    assert tables["ray"] == tables["local"] and tables["submitit-local"] == tables["local"]
