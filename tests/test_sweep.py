"""The sweep: stable run identities, a growing grid, resuming after kills, two sweeps on one folder, threads per run
(executors agreeing: test_stages.py)."""
from __future__ import annotations

import csv
import json

import pytest
import yaml

from audio2image.config import ConfigError, load_config
from audio2image.prepare.store import Store
from audio2image.sweep import PretrainingFailed, pretrain
from audio2image.sweep.executors import execute
from audio2image.sweep.grid import transfer_plan
from stores import make_image_store


def plan(tmp_path, store, **overrides):
    values = [f"out_dir={tmp_path}", "name=exp", "transfer_epochs=1", "inits=random", "seeds=0,1",
              "fractions=0.5,1.0", "progress=false"] + [f"{k}={v}" for k, v in overrides.items()]
    config = load_config("configs/tiny.yaml", values)
    return config, transfer_plan(config, store)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_image_store(tmp_path_factory.mktemp("store") / "image")


def test_run_ids_are_stable_and_a_grown_grid_keeps_finished_runs(tmp_path, store):
    config, runs = plan(tmp_path, store, fractions="1.0")
    execute(runs, config)
    finished = {r.run_dir: (r.run_dir / "result.json").stat().st_mtime_ns for r in runs}
    grown_config, grown = plan(tmp_path, store, fractions="0.5,1.0")
    assert set(finished) <= {r.run_dir for r in grown} and len(grown) == 2 * len(runs)
    execute(grown, grown_config)
    for run_dir, mtime in finished.items():
        assert (run_dir / "result.json").stat().st_mtime_ns == mtime  # not rerun
    _, other = plan(tmp_path, store, transfer_lr=0.001)
    assert not {r.run_dir for r in other} & {r.run_dir for r in grown}  # another setting, other runs


def test_same_seed_same_subset_across_inits(tmp_path, store):
    from audio2image.prepare.store import Store
    from audio2image.training.tasks import build_task, fraction_rows

    config, _ = plan(tmp_path, store)
    task = build_task(Store(store), config, "transfer")
    assert (fraction_rows(task, 0.5, 0) == fraction_rows(task, 0.5, 0)).all()
    assert set(fraction_rows(task, 0.5, 0)) <= set(fraction_rows(task, 1.0, 0))


def _sweep(out, data, *overrides, **kwargs):
    import subprocess
    import sys

    command = [sys.executable, "-m", "audio2image", "sweep", "tiny", f"out_dir={out}", f"data_dir={data}", *overrides]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)


DIVERGED = {"status": "diverged", "message": "the training loss became non-finite in epoch 2"}


@pytest.mark.parametrize("outcome, hint", [(DIVERGED, True), (None, False)])  # None: no result.json
def test_a_failed_pretraining_names_its_run_and_why(tmp_path, store, monkeypatch, outcome, hint):
    """Not a config problem: the error gives the failed run and its own reason; a lower pretrain_lr only for a
    diverged run."""
    config, _ = plan(tmp_path, store, pretrain_seeds="0,1")

    def execute(plans, config):  # seed 0 fails, seed 1 completes
        for plan in plans:
            plan.run_dir.mkdir(parents=True, exist_ok=True)
            result = outcome if plan.run_dir.name.endswith("seed0") else {"status": "completed", "message": ""}
            if result is not None:
                (plan.run_dir / "result.json").write_text(json.dumps(result))

    monkeypatch.setattr("audio2image.sweep.execute", execute)
    with pytest.raises(PretrainingFailed) as error:
        pretrain(config, {"source": Store(store)})
    text = str(error.value)
    assert not isinstance(error.value, ConfigError)
    assert "source-seed0" in text and "source-seed1" not in text
    assert ("non-finite in epoch 2" in text) == hint and ("lower pretrain_lr" in text) == hint
    assert hint or "no result.json" in text


def _rows_without_ids(path) -> list[dict]:
    """Rows without run ids and timing: the two sweeps keep their stores in different folders."""
    with open(path) as handle:
        return [{k: v for k, v in row.items() if k not in ("run_id", "wall_seconds")}
                for row in csv.DictReader(handle)]


FEW = ("transfer_epochs=1", "cka_items=0")  # the whole-sweep tests' settings: seconds a sweep


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> list[dict]:
    """The table of `sweep tiny` run once, alone and uninterrupted: what a killed or a shared sweep must give. Made
    once for both (conftest.py deals the slow tests of one module fixture to one worker)."""
    root = tmp_path_factory.mktemp("uninterrupted")
    assert _sweep(root / "out", root / "data", *FEW).wait(timeout=600) == 0
    rows = _rows_without_ids(root / "out" / "tiny" / "results.csv")
    assert len(rows) == 8
    return rows


@pytest.mark.slow
def test_a_sweep_killed_three_times_gives_the_uninterrupted_results(tmp_path, uninterrupted):
    import os
    import random
    import signal
    import time

    moments = random.Random(7).sample([x / 2 for x in range(4, 24)], 3)  # seconds into each attempt
    for moment in moments:  # kills land in synthesis, preparation, pretraining or transfer runs
        process = _sweep(tmp_path / "killed", tmp_path / "data-killed", *FEW, start_new_session=True)
        time.sleep(moment)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # the whole group: preparation workers too
        process.wait()
    assert _sweep(tmp_path / "killed", tmp_path / "data-killed", *FEW).wait(timeout=600) == 0
    assert _rows_without_ids(tmp_path / "killed" / "tiny" / "results.csv") == uninterrupted


@pytest.mark.slow
def test_two_sweeps_on_one_folder_train_each_run_once(tmp_path, uninterrupted):
    """Two sweep processes started together on one experiment folder (and one data_dir): every run, pretraining
    included, is trained by one of them, no epoch line is written twice, and the table is one process's (the
    single-process lock: test_owners.py)."""
    both = [_sweep(tmp_path / "shared", tmp_path / "data-shared", *FEW) for _ in range(2)]
    assert [process.wait(timeout=600) for process in both] == [0, 0]
    runs = [*(tmp_path / "shared" / "tiny" / "transfer").iterdir(),
            *(tmp_path / "shared" / "tiny" / "pretrain").iterdir()]
    assert len(runs) == 9
    for run in runs:
        epochs = [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert epochs == sorted(set(epochs)) and epochs[0] == 1, run
    assert _rows_without_ids(tmp_path / "shared" / "tiny" / "results.csv") == uninterrupted


@pytest.mark.slow
def test_each_run_gets_its_share_of_the_cores(tmp_path, store, monkeypatch):
    """Threads are resolved once from the config (threads, else cores // parallel) and recorded in each result,
    so every executor runs a run alike and parallel runs do not fight over the cores."""
    import os

    from audio2image.sweep import executors
    from audio2image.training import cores

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    for parallel, threads, expected in ((1, 0, 8), (4, 0, 2), (3, 0, 2), (16, 0, 1), (4, 3, 3)):
        config, _ = plan(tmp_path, store, parallel=parallel, threads=threads)
        assert executors.run_threads(config) == expected, (parallel, threads)
    monkeypatch.setattr(cores, "cgroup_quota", lambda: 2.5)  # a container's quota of 2.5 cores on those 8
    for parallel, expected in ((1, 2), (2, 1), (4, 1)):
        config, _ = plan(tmp_path, store, parallel=parallel)
        assert executors.run_threads(config) == expected, parallel
    for workers, threads, cpus in ((4, 1, 4), (1, 3, 3), (2, 2, 2)):  # what Ray and Slurm are asked for
        config, _ = plan(tmp_path, store, workers=workers, threads=threads)
        assert executors.run_cpus(config) == cpus, (workers, threads)
    monkeypatch.undo()
    cores = len(os.sched_getaffinity(0))
    config, runs = plan(tmp_path / "two", store, parallel=2, fractions="1.0")
    execute(runs, config)
    for run in runs:
        result = json.loads((run.run_dir / "result.json").read_text())
        assert result["threads"] == max(1, cores // 2)  # set in each pool worker, whatever torch's default
        assert yaml.safe_load((run.run_dir / "config.yaml").read_text())["threads"] == max(1, cores // 2)
