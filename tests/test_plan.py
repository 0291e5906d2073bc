"""`audio2image plan`: the runs a sweep will train are the ones it then trains, named alike; finished runs are
counted; time comes from calibration on a fresh experiment and from measured epochs after a sweep; the disk
estimate is near what the sweep writes; the sweep logs the plan's line; nothing is written by planning."""
from __future__ import annotations

import csv
import json
import os

import pytest

from audio2image.cli import main
from audio2image.config import ConfigError, load_config
from audio2image.sweep import run_sweep
from audio2image.sweep.costs import CALIBRATED, MEASURED, _fitted
from audio2image.sweep.plan import format_plan, plan_experiment
from audio2image.training import cores
from audio2image.training.cores import load_warning

# a sweep with a choice to make: 2 settings x 2 cells tuned on seed 0, then the chosen ones on seed 1
TUNED = ["fractions=1.0", "inits=random,audio", "seeds=0,1", "transfer_lrs=0.01,0.05", "transfer_epochs=1",
         "cka_items=0"]


def tiny(root, *overrides):
    return load_config("configs/tiny.yaml", [f"out_dir={root / 'runs'}", f"data_dir={root / 'data'}", *TUNED,
                                             *overrides])


def folders(experiment, kind: str) -> set[str]:
    return {f"{kind}/{p.name}" for p in (experiment / kind).iterdir() if p.is_dir()}


def bytes_under(*roots) -> int:
    return sum(p.stat().st_size for root in roots for p in root.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A plan of a fresh experiment, the sweep's log, and a plan of the experiment after it."""
    root = tmp_path_factory.mktemp("plan")
    config = tiny(root)
    before = plan_experiment(config)
    made = sorted(p.relative_to(root) for p in root.rglob("*"))
    capture = pytest.MonkeyPatch()
    lines = []
    capture.setattr("audio2image.sweep.log", lines.append)
    try:
        summary = run_sweep(config)
    finally:
        capture.undo()
    return root, config, before, made, lines, summary, plan_experiment(config)


@pytest.mark.slow
def test_a_fresh_plan_counts_what_the_sweep_then_trains_and_writes_nothing(swept):
    root, config, before, made, _, summary, _ = swept
    assert made == []  # no store, no synthetic data, no experiment folder
    runs = before["runs"]
    assert runs["pretraining"]["folders"] == ["pretrain/source-seed0"]
    assert (runs["tuning"]["planned"], runs["final"]["planned"], runs["final"]["known"]) == (4, 4, 0)
    assert runs["final"]["undecided_cells"] == 2 and runs["final"]["tuning_runs"] == 2
    assert runs["finished"] == 0 and runs["to_train"] == 7
    experiment = config.experiment_dir
    assert folders(experiment, "pretrain") == set(runs["pretraining"]["folders"])
    trained = folders(experiment, "transfer")
    assert set(runs["tuning"]["folders"]) <= trained  # the ids named before pretraining are the sweep's
    assert len(trained) == runs["to_train"] - runs["pretraining"]["planned"] and summary["runs"] == 4
    assert before["time"]["source"] == CALIBRATED and before["time"]["seconds"] > 0


@pytest.mark.slow
def test_after_the_sweep_every_run_is_named_and_finished_and_times_are_measured(swept):
    _, config, _, _, _, _, after = swept
    runs = after["runs"]
    experiment = config.experiment_dir
    assert set(runs["tuning"]["folders"]) | set(runs["final"]["folders"]) == folders(experiment, "transfer")
    with open(experiment / "results.csv") as handle:
        assert {f"transfer/{row['run_id']}" for row in csv.DictReader(handle)} == set(runs["final"]["folders"])
    assert runs["final"]["undecided_cells"] == 0 and runs["final"]["known"] == 4
    assert runs["finished"] == 7 and runs["to_train"] == 0
    assert all(runs[kind]["finished"] == runs[kind]["planned"] for kind in ("pretraining", "tuning", "final"))
    assert after["time"]["source"] == MEASURED and after["time"]["seconds"] == 0  # nothing left to train
    assert after["disk"]["bytes"] == 0
    grown = plan_experiment(tiny(config.experiment_dir.parents[1], "seeds=0,1,2"))  # one more seed: 2 new runs
    assert grown["time"]["source"] == MEASURED and grown["time"]["seconds"] > 0 and grown["runs"]["to_train"] == 2
    assert "2 to train" in grown["summary"] and "measured epoch times" in grown["summary"]


@pytest.mark.slow
def test_the_disk_estimate_is_near_what_the_sweep_wrote(swept):
    root, config, before, _, _, _, _ = swept
    written = bytes_under(root / "data" / "stores", config.experiment_dir)
    assert written / 2 < before["disk"]["bytes"] < written * 2
    assert before["disk"]["checkpoint_bytes"]["transfer:target"] > 10e6  # a ResNet-18, counted from the model


@pytest.mark.slow
def test_the_sweep_logs_the_plans_line_first(swept):
    _, _, before, _, lines, _, _ = swept
    assert lines[0].startswith("plan: 1 pretraining, 4 tuning, 4 final runs (2 of them tuning runs; 0 finished): "
                               "7 to train; about ")
    assert "of training (calibration" in lines[0] and lines[0].endswith("to write")
    assert before["summary"].split("; about")[0] == lines[0].split("; about")[0]


@pytest.mark.slow
def test_the_power_of_the_design_comes_from_the_observed_spread(swept):
    _, config, before, _, _, _, after = swept
    assert before["power"] is None
    assert {(row["init"], row["fraction"]) for row in after["power"]} == {("audio", 1.0)}
    more = plan_experiment(tiny(config.experiment_dir.parents[1], "seeds=0,1,2,3,4"))
    (row,) = more["power"]
    assert row["pairs"] == 2 and row["seeds"] == 5 and row["metric"] == "test_top1"
    if row["sd"] > 0:  # two seeds that differ alike have no spread to judge by
        assert 0 < row["detectable"] and row["seeds_for_effect"] >= 3
    assert "power at 5 seeds" in format_plan(more)


def test_measured_epochs_give_a_line_where_runs_differ_in_items():
    seconds = _fitted([{"items": 10, "epoch": 3.0, "beyond": 1.0}, {"items": 30, "epoch": 5.0, "beyond": 1.0}],
                      epochs=2)
    assert seconds(20) == pytest.approx(2 * 4.0 + 1.0)  # 2 s fixed (validation) + 0.1 s per item, per epoch
    alone = _fitted([{"items": 10, "epoch": 3.0, "beyond": 0.0}], epochs=2)
    assert alone(20) == pytest.approx(2 * 6.0)  # one size measured: seconds per item


def test_a_busy_machine_is_said(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(cores, "cgroup_quota", lambda: None)
    monkeypatch.setattr(os, "getloadavg", lambda: (1.5, 1.0, 1.0))
    assert load_warning() == ""
    monkeypatch.setattr(os, "getloadavg", lambda: (5.2, 4.0, 3.0))
    assert "loaded: load average 5.2 on 2 cores" in load_warning() and "threads=1" in load_warning()


@pytest.mark.parametrize("override, words", [("nosuch=1", "unknown config key 'nosuch'"),
                                             ("inits=random,audio@9", "resnet18 has 5 stages")])
def test_a_bad_config_is_the_error_run_gives_and_nothing_is_made(tmp_path, override, words):
    errors = []
    for command in (plan_experiment, run_sweep):
        with pytest.raises(ConfigError) as error:
            command(tiny(tmp_path, override))
        errors.append(str(error.value))
    assert errors[0] == errors[1] and words in errors[0]
    assert not os.listdir(tmp_path)


def test_the_command_prints_the_plan_in_words_or_as_json(tmp_path, capsys):
    args = ["plan", "tiny", f"out_dir={tmp_path / 'runs'}", f"data_dir={tmp_path / 'data'}", "transfer_epochs=1"]
    main(args)
    text = capsys.readouterr().out
    assert "pretraining   1 runs, 0 finished: source-seed0" in text and "from calibration" in text
    main([*args, "--json"])
    plan = json.loads(capsys.readouterr().out)
    assert plan["runs"]["final"]["planned"] == 8 and plan["runs"]["to_train"] == 9  # 2 fractions x 2 inits x 2 seeds
    with pytest.raises(SystemExit) as exit_code:
        main(["plan", "tiny", "nosuch=1"])
    assert exit_code.value.code == 2 and "unknown config key 'nosuch'" in capsys.readouterr().err
    assert not os.listdir(tmp_path)
