"""A fair fight: settings chosen per init on validation only, pretraining seeds paired with transfer seeds, the
positive control's settings, and the config's bad values named."""
from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping

import pytest

from audio2image.config import ConfigError, load_config
from audio2image.prepare.stores import dataset_root, synth_values
from audio2image.sweep.executors import execute
from audio2image.sides import pretrained_sides
from audio2image.sweep.grid import plan_transfer, pretrain_plan, pretrain_seed_for
from audio2image.sweep.results import write_results
from audio2image.sweep.selection import choose, edges, run_selection, validation_row
from audio2image.sweep.grid import transfer_plan
from stores import make_image_store

SETTINGS = [(0.01, 0.0), (0.03, 0.0), (0.1, 0.0)]


class ValidationOnly(Mapping):
    """A results row that fails the test if anything reads one of its test metrics."""

    def __init__(self, values: dict):
        self.values = values

    def __getitem__(self, key):
        assert not str(key).startswith("test"), f"selection read {key}"
        return self.values[key]

    def __iter__(self):
        return iter(self.values)

    def __len__(self):
        return len(self.values)


def row(init, lr, seed, value, fraction=1.0, test=0.0, status="completed"):
    return ValidationOnly({"fraction": fraction, "init": init, "freeze": "none", "seed": seed, "lr": lr,
                           "weight_decay": 0.0, "metric": "val_top1", "status": status, "value": value,
                           "test_top1": test})


def test_each_init_gets_its_own_best_setting_and_test_metrics_are_never_read():
    # random is best at 0.1, audio at 0.01; the test metrics say the opposite and must not matter
    rows = [row("random", 0.01, s, 0.50, test=0.9) for s in (0, 1)]
    rows += [row("random", 0.03, s, 0.60) for s in (0, 1)]
    rows += [row("random", 0.1, s, v) for s, v in ((0, 0.7), (1, 0.8))]
    rows += [row("audio", 0.01, s, 0.75, test=0.1) for s in (0, 1)]
    rows += [row("audio", 0.03, s, 0.70) for s in (0, 1)]
    rows += [row("audio", 0.1, s, v, test=0.99) for s, v in ((0, 0.9), (1, 0.2))]
    decisions = {d["init"]: d for d in choose(rows, SETTINGS)}
    assert decisions["random"]["chosen"] == [0.1, 0.0] and decisions["audio"]["chosen"] == [0.01, 0.0]
    assert decisions["random"]["edges"] == ["highest learning rate"]
    assert decisions["audio"]["edges"] == ["lowest learning rate"]
    means = {c["lr"]: c["mean"] for c in decisions["random"]["candidates"]}
    assert means == pytest.approx({0.01: 0.5, 0.03: 0.6, 0.1: 0.75})


def test_a_diverged_setting_never_wins_and_a_middle_choice_is_no_edge():
    rows = [row("random", 0.01, 0, 0.4), row("random", 0.03, 0, 0.6),
            row("random", 0.1, 0, -math.inf, status="diverged")]
    (decision,) = choose(rows, SETTINGS)
    assert decision["chosen"] == [0.03, 0.0] and decision["edges"] == []
    assert decision["candidates"][2]["diverged"] == 1
    assert edges((0.03, 5e-4), [(0.03, 1e-4), (0.03, 5e-4), (0.03, 1e-3)]) == []
    assert edges((0.03, 1e-3), [(0.03, 1e-4), (0.03, 5e-4), (0.03, 1e-3)]) == ["highest weight decay"]
    # of two values every choice is an end: flagging it says nothing (the demo's every cell was flagged so)
    assert edges((0.03, 1e-3), [(0.03, 1e-4), (0.03, 1e-3)]) == []


def test_validation_row_holds_no_test_metric(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    result = {"status": "completed", "selection_metric": "val_top1", "val": {"top1": 0.4, "loss": 1.0},
              "test": {"top1": 0.9}, "run": {"fraction": 1.0, "init_name": "audio", "init": "audio:x", "seed": 0,
                                             "freeze": "none", "lr": 0.1, "weight_decay": 0.0}}
    (run / "result.json").write_text(json.dumps(result))
    found = validation_row(run)
    assert found["value"] == 0.4 and found["init"] == "audio"
    assert not any("test" in key for key in found) and 0.9 not in found.values()


def sweep_config(tmp_path, *overrides):
    return load_config("configs/tiny.yaml", [f"out_dir={tmp_path}", "name=exp", "transfer_epochs=1", "inits=random",
                                             "seeds=0,1", "fractions=1.0", "progress=false", *overrides])


def test_selection_trains_every_setting_on_the_tuning_seeds_then_the_chosen_one_on_all(tmp_path):
    store = make_image_store(tmp_path / "image")
    config = sweep_config(tmp_path, "transfer_lrs=0.001,0.05")
    run = lambda runs: execute(runs, config)  # noqa: E731
    chosen = run_selection(config, store, run)
    runs = transfer_plan(config, store, chosen)
    execute(runs, config)
    selection = json.loads((tmp_path / "exp" / "selection.json").read_text())
    (cell,) = selection["cells"]
    assert selection["tune_seeds"] == [0] and [len(c["values"]) for c in cell["candidates"]] == [1, 1]
    best = max(cell["candidates"], key=lambda c: c["mean"])
    assert cell["chosen"] == [best["lr"], best["weight_decay"]] == list(chosen[(1.0, "random", "none")])
    rows = write_results([r.run_dir for r in runs], tmp_path / "exp" / "results.csv")
    assert [(r["seed"], r["lr"]) for r in rows] == [(0, best["lr"]), (1, best["lr"])]  # the chosen runs only
    assert len(list((tmp_path / "exp" / "transfer").iterdir())) == 3  # 2 tuning runs + 1 more seed
    # a grown list trains only the new setting on the tuning seed; the finished runs are reused
    grown = sweep_config(tmp_path, "transfer_lrs=0.001,0.05,0.01")
    run_selection(grown, store, lambda runs: execute(runs, grown))
    assert len(list((tmp_path / "exp" / "transfer").iterdir())) == 4
    with open(tmp_path / "exp" / "results.csv") as handle:
        assert {r["lr"] for r in csv.DictReader(handle)} == {str(best["lr"])}


def test_an_init_naming_its_run_folder_keeps_its_chosen_setting(tmp_path):
    """`image:RUN_DIR` is one cell of the grid; its runs say "image": the choice must still find the cell."""
    store = make_image_store(tmp_path / "image")
    first = sweep_config(tmp_path, "seeds=0", "name=first")
    (source,) = transfer_plan(first, store)
    execute([source], first)
    config = sweep_config(tmp_path, f"inits=[image:{source.run_dir}]", "transfer_lrs=0.001,0.05")
    chosen = run_selection(config, store, lambda runs: execute(runs, config))
    assert list(chosen) == [(1.0, f"image:{source.run_dir}", "none")]
    assert [run.spec.seed for run in transfer_plan(config, store, chosen)] == [0, 1]


def test_transfer_seed_i_uses_pretraining_run_i_mod_n(tmp_path):
    config = sweep_config(tmp_path, "inits=random,audio,audio@2", "seeds=5,6,7", "pretrain_seeds=0,1")
    assert [pretrain_seed_for(config, s) for s in config.seeds] == [0, 1, 0]  # by position, not value
    for seed, expected in ((5, 0), (6, 1), (7, 0)):
        run = plan_transfer(config, tmp_path / "store", 1.0, "audio@2", seed, "none")
        assert run.spec.init == f"audio@2:{tmp_path / 'exp' / 'pretrain' / f'source-seed{expected}'}"
        assert run.spec.extra["pretrain_seed"] == expected
    ids = {pretrain_plan(config, tmp_path / "store", "source", s).spec.run_id for s in config.pretrain_seeds}
    assert len(ids) == 2  # the pretraining seed is part of a pretraining run's identity
    random = plan_transfer(config, tmp_path / "store", 1.0, "random", 5, "none")
    assert "pretrain_seed" not in random.spec.extra


def test_a_synthetic_control_of_the_targets_kind_has_classes_of_its_own(tmp_path):
    config = sweep_config(tmp_path, "control=caltech256", "inits=random,control,audio", "synthetic=true")
    assert pretrained_sides(config) == ["source", "control"]
    assert synth_values(config, "control")["first_class"] == config.synth_classes
    assert "first_class" not in synth_values(config, "target")
    assert dataset_root(config, "control") != dataset_root(config, "target")
    run = plan_transfer(config, tmp_path / "store", 1.0, "control", 1, "none")
    assert run.spec.init.endswith("pretrain/control-seed0") and run.spec.extra["init_name"] == "control"


@pytest.mark.parametrize("overrides, key, words", [
    (["transfer_lrs=[]"], "transfer_lrs", "give at least one value"),
    (["transfer_lrs=0.1,0"], "transfer_lrs", "greater than 0"),
    (["transfer_lrs=0.1,-1"], "transfer_lrs", "greater than 0"),
    (["transfer_weight_decays=-0.1"], "transfer_weight_decays", "0 or more"),
    (["pretrain_seeds=[]"], "pretrain_seeds", "give at least one value"),
    (["tune_seeds=3"], "tune_seeds", "must not exceed the number of seeds (2)"),
    (["control=caltech256", "inits=random,control", "target_root=/data/c", "control_root=/data/c"], "control",
     "same dataset as target"),
    (["control=caltech256", "inits=random,control"], "control", "same dataset as target"),  # not synthetic
    (["control=imagefolder"], "control", "no init uses it"),
    (["inits=random,control"], "inits", "control=DATASET"),
])
def test_bad_fair_fight_values_name_the_key(tmp_path, overrides, key, words):
    with pytest.raises(ConfigError) as error:
        sweep_config(tmp_path, "synthetic=false", *overrides)
    assert f"'{key}'" in str(error.value) and words in str(error.value)


def test_more_transfer_seeds_than_pretraining_seeds_is_allowed(tmp_path):
    config = sweep_config(tmp_path, "seeds=0,1,2,3", "pretrain_seeds=7")
    assert {pretrain_seed_for(config, s) for s in config.seeds} == {7}
