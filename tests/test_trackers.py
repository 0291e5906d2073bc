"""Experiment trackers (training/trackers.py), offline and without accounts: every run of an experiment is read back
from MLflow's store (its client), W&B's offline files (their protobuf records) and TensorBoard's events (its
reader); a resumed run continues its tracker runs; a tracker that fails or hangs is turned off with one line and
leaves the run's result as it was."""
from __future__ import annotations

import json
import struct
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from audio2image.config import load_config
from audio2image.sweep.grid import plan_transfer, pretrain_plan
from audio2image.training import trackers
from audio2image.training.run import RunSpec, train_run
from stores import kill_at_validation, make_audio_store, make_image_store

# MLflow's SQL store, on this SQLAlchemy, warns of a deprecation of SQLAlchemy's that it uses: theirs to mend
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")
# one thread: a tracker's own threads and processes busy the cores, and a thread count fitted to them would change
# the summation order, so that a tracked run and an untracked one could differ in their last digits
TINY = ["transfer_epochs=2", "pretrain_epochs=1", "audio_crop_seconds=1", "audio_eval_crops=2", "progress=false",
        "threads=1", "checkpoint_seconds=0"]


def tiny(root: Path, *overrides):
    return load_config("configs/tiny.yaml", [*TINY, f"out_dir={root}", *overrides])


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    """W&B offline, its own folders in the test's; a fresh W&B session for the test and after it."""
    wandb = pytest.importorskip("wandb")
    wandb.teardown()  # W&B reads its environment once per session
    for key in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(key, str(tmp_path / "wandb-home" / key.lower()))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    yield
    wandb.teardown()


def tracked_experiment(root: Path, monkeypatch) -> SimpleNamespace:
    """One experiment, all three trackers on: a pretraining run on audio, a transfer run from it to images, and a
    transfer run killed in epoch 2's validation (epoch 1 checkpointed), then resumed."""
    config = tiny(root, "trackers=mlflow,wandb,tensorboard")
    stores = {"audio": make_audio_store(root / "audio"), "image": make_image_store(root / "image")}
    pretrain = pretrain_plan(config, stores["audio"])
    transfer = plan_transfer(config, stores["image"], 0.5, "audio", 0, "none")
    resumed = plan_transfer(config, stores["image"], 1.0, "random", 1, "none")
    results = {"pretrain": train_run(pretrain.config, pretrain.spec, pretrain.run_dir),
               "transfer": train_run(transfer.config, transfer.spec, transfer.run_dir)}
    with monkeypatch.context() as patch:
        kill_at_validation(patch, 2)
        with pytest.raises(KeyboardInterrupt):
            train_run(resumed.config, resumed.spec, resumed.run_dir)
    results["resumed"] = train_run(resumed.config, resumed.spec, resumed.run_dir)
    return SimpleNamespace(config=config, pretrain=pretrain, transfer=transfer, resumed=resumed, results=results)


@pytest.mark.slow
def test_every_tracker_records_every_run_and_a_resumed_run_continues_its_own(tmp_path, monkeypatch, offline_wandb):
    pytest.importorskip("mlflow")
    monkeypatch.setattr(trackers, "_OFF", {})
    experiment = tracked_experiment(tmp_path, monkeypatch)
    assert trackers._OFF == {}
    check_mlflow(experiment)
    check_wandb(experiment)
    check_tensorboard(experiment)


def lines(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def mlflow_runs(config) -> tuple:
    """The experiment's MLflow runs by their `run_id` tag, read through MLflow's client."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{config.experiment_dir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(config.name)
    runs = client.search_runs([experiment.experiment_id])
    by_id = {run.data.tags["run_id"]: run for run in runs}
    assert len(by_id) == len(runs)  # one MLflow run per run, resumed or not
    return client, by_id


def check_mlflow(experiment) -> None:
    """Every run in MLflow's store: its params (the flat config), tags, every number of each epoch at that epoch,
    and its test metrics; the resumed run's two parts in one MLflow run."""
    client, runs = mlflow_runs(experiment.config)
    transfer, pretrain, resumed = experiment.transfer, experiment.pretrain, experiment.resumed
    assert set(runs) == {transfer.spec.run_id, pretrain.spec.run_id, resumed.spec.run_id}
    run = runs[transfer.spec.run_id]
    assert run.info.status == "FINISHED" and run.info.run_name == transfer.spec.run_id
    assert run.data.params == {key: str(value) for key, value in transfer.config.to_dict().items()}
    assert {key: run.data.tags[key] for key in ("stage", "init", "fraction", "seed", "freeze", "pretrain_seed",
                                                "backbone", "lr", "weight_decay", "cell", "status")} == {
        "stage": "transfer", "init": "audio", "fraction": "0.5", "seed": "0", "freeze": "none",
        "pretrain_seed": "0", "backbone": "resnet18", "lr": str(transfer.config.transfer_lr),
        "weight_decay": str(transfer.config.transfer_weight_decay), "cell": "init=audio fraction=0.5 freeze=none",
        "status": "completed"}
    epochs = lines(transfer.run_dir)
    for key in ("train_loss", "val_loss", "val_top1", "lr", "seconds"):  # every number of the metrics line
        history = client.get_metric_history(run.info.run_id, key)
        assert [(m.step, m.value) for m in history] == [(line["epoch"], pytest.approx(line[key])) for line in epochs]
    assert run.data.metrics["test_top1"] == pytest.approx(experiment.results["transfer"]["test"]["top1"])
    first = runs[pretrain.spec.run_id]
    assert (first.data.tags["stage"], first.data.tags["side"], first.info.status) == ("pretrain", "source", "FINISHED")
    assert [m.step for m in client.get_metric_history(first.info.run_id, "val_roc_auc")] == [1]
    assert first.data.metrics["test_roc_auc"] == pytest.approx(experiment.results["pretrain"]["test"]["roc_auc"])
    again = runs[resumed.spec.run_id]
    assert again.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(again.info.run_id, "val_top1")] == [1, 2]


def wandb_records(path: Path) -> list:
    """The records of a W&B run file (`run-ID.wandb`): its header, then blocks of 32 KiB holding chunks, each a
    4-byte checksum, a 2-byte length and a 1-byte kind (1 a whole record, 2/3/4 its first, middle and last part),
    every record one protobuf Record of wandb's own."""
    from wandb.proto import wandb_internal_pb2

    data, block, at, pending, records = path.read_bytes(), 32768, 7, b"", []
    assert data[:4] == b":W&B"
    while at + 7 <= len(data):
        if block - at % block < 7:  # a block's tail too short for a chunk header is padding
            at += block - at % block
            continue
        _, length, kind = struct.unpack("<IHB", data[at:at + 7])
        if kind == 0:
            break
        pending, at = pending + data[at + 7:at + 7 + length], at + 7 + length
        if kind in (1, 4):
            records.append(wandb_internal_pb2.Record.FromString(pending))
            pending = b""
    return records


def wandb_run(path: Path) -> SimpleNamespace:
    """A W&B offline run as its file holds it: the run record, its config, history rows and summary."""
    def values(items) -> dict:
        return {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in items}

    records = wandb_records(path)
    run = next(record.run for record in records if record.WhichOneof("record_type") == "run")
    history = [values(record.history.item) for record in records if record.WhichOneof("record_type") == "history"]
    summary = {}
    for record in records:
        if record.WhichOneof("record_type") == "summary":
            summary.update(values(record.summary.update))
    return SimpleNamespace(run=run, config=values(run.config.update), history=history, summary=summary)


def wandb_files(config, run_id: str) -> list[Path]:
    return sorted((config.experiment_dir / "wandb").glob(f"offline-run-*/run-{run_id}.wandb"))


def check_wandb(experiment) -> None:
    """Every run in W&B's offline files: id and name its run id, project the experiment's name, group its cell,
    job type its stage, its config and tags, a history row per epoch, its test metrics in the summary; the resumed
    run's two parts under the one id."""
    transfer = experiment.transfer
    (path,) = wandb_files(experiment.config, transfer.spec.run_id)
    run = wandb_run(path)
    assert (run.run.run_id, run.run.display_name, run.run.project, run.run.job_type, run.run.run_group) == (
        transfer.spec.run_id, transfer.spec.run_id, "tiny", "transfer", "init=audio fraction=0.5 freeze=none")
    assert {key: run.config[key] for key in ("transfer_lr", "fraction", "seed", "trackers")} == {
        "transfer_lr": transfer.config.transfer_lr, "fraction": 0.5, "seed": 0,
        "trackers": ["mlflow", "wandb", "tensorboard"]}
    assert run.config["run"]["init"] == "audio" and run.config["run"]["pretrain_seed"] == 0
    assert "init=audio" in run.run.tags and "stage=transfer" in run.run.tags
    epochs = lines(transfer.run_dir)  # each row: every number of the epoch's line (and W&B's own _step, ...)
    assert [{key: row[key] for key in line} for row, line in zip(run.history, epochs)] == [
        {key: pytest.approx(value) for key, value in line.items()} for line in epochs]
    assert len(run.history) == len(epochs) == 2
    assert run.summary["test_top1"] == pytest.approx(experiment.results["transfer"]["test"]["top1"])
    assert run.summary["status"] == "completed"
    (path,) = wandb_files(experiment.config, experiment.pretrain.spec.run_id)
    pretraining = wandb_run(path)
    assert (pretraining.run.job_type, pretraining.run.run_group) == ("pretrain", "pretrain side=source")
    assert [row["epoch"] for row in pretraining.history] == [1]
    parts = [wandb_run(path) for path in wandb_files(experiment.config, experiment.resumed.spec.run_id)]
    assert len(parts) == 2 and {part.run.run_id for part in parts} == {experiment.resumed.spec.run_id}
    assert sorted(row["epoch"] for part in parts for row in part.history) == [1, 2]


def check_tensorboard(experiment) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    transfer = experiment.transfer
    events = EventAccumulator(str(transfer.run_dir / "tensorboard"))
    events.Reload()
    epochs = lines(transfer.run_dir)
    assert [(e.step, e.value) for e in events.Scalars("val_top1")] == [
        (line["epoch"], pytest.approx(line["val_top1"])) for line in epochs]
    assert events.Scalars("test_top1")[0].value == pytest.approx(experiment.results["transfer"]["test"]["top1"])


def test_a_failing_tracker_warns_once_and_changes_no_result(tmp_path, monkeypatch, capsys):
    pytest.importorskip("mlflow")
    monkeypatch.setattr(trackers, "_OFF", {})
    (tmp_path / "a-file").write_text("not a folder")
    store = make_image_store(tmp_path / "image")
    bad = tiny(tmp_path, "transfer_epochs=1", "trackers=mlflow", f"mlflow_uri=sqlite:///{tmp_path}/a-file/mlflow.db")
    plain = tiny(tmp_path, "transfer_epochs=1")
    tracked = [train_run(bad, RunSpec("transfer", store, seed=seed), tmp_path / f"tracked{seed}") for seed in (0, 1)]
    err = capsys.readouterr().err
    assert err.count("mlflow tracking off: ") == 1 and "a-file" in err
    untracked = train_run(plain, RunSpec("transfer", store, seed=0), tmp_path / "untracked")
    assert tracked[0]["status"] == "completed" and tracked[0]["test"] == untracked["test"]


def run_for_trackers(tmp_path: Path) -> trackers.TrackedRun:
    return trackers.TrackedRun("r1", "transfer", "init=random fraction=1.0 freeze=none", {"run_id": "r1"}, {},
                               "tiny", tmp_path, tmp_path / "r1")


def test_a_tracker_that_hangs_is_left_behind_and_turned_off(tmp_path, monkeypatch, capsys):
    """A tracker that does not answer (a server that never replies) holds up neither the epochs nor, beyond
    FINISH_SECONDS, the run's end; it is off for the rest of the process."""
    release = threading.Event()

    class Hanging:
        name = "mlflow"

        def __init__(self, config):
            pass

        def start(self, run):
            release.wait(10)

        log = finish = stop = start

    monkeypatch.setattr(trackers, "_OFF", {})
    monkeypatch.setitem(trackers.BACKENDS, "mlflow", Hanging)
    monkeypatch.setattr(trackers, "FINISH_SECONDS", 0.2)
    config = SimpleNamespace(trackers=["mlflow"])
    running = trackers.Trackers.start(config, run_for_trackers(tmp_path))
    for epoch in range(1, 100):
        running.log({"epoch": epoch, "loss": 1.0})
    assert running.finish({"status": "completed"}) == {"status": "completed"}
    release.set()
    assert capsys.readouterr().err == "mlflow tracking off: no answer within 1 s\n"
    assert trackers.Trackers.start(config, run_for_trackers(tmp_path)).workers == []


def test_a_missing_package_names_the_extra_to_install_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(trackers, "_OFF", {})
    monkeypatch.setitem(sys.modules, "wandb", None)  # what an import finds for a package that is not installed
    config = SimpleNamespace(trackers=["wandb"], wandb_project="")
    for _ in range(2):
        trackers.Trackers.start(config, run_for_trackers(tmp_path)).finish({"status": "completed"})
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("wandb tracking off: its package is missing")
    assert err.rstrip().endswith("pip install 'audio2image[wandb]'")


def test_the_trackers_module_imports_no_tracker_package():
    """A run without trackers pays for none of their imports (mlflow's alone takes about a second)."""
    code = ("import sys; from audio2image.training import trackers; trackers.Trackers().finish({}); "
            "print(sorted(m for m in ('mlflow', 'wandb', 'tensorboard', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_trackers_key_takes_the_former_tensorboard_flag_with_a_note(capsys):
    assert load_config(None, ["tensorboard=true"]).trackers == ["tensorboard"]
    assert capsys.readouterr().err == "tensorboard=true is now trackers=tensorboard; using that\n"
    assert load_config(None, ["trackers=mlflow", "tensorboard=true"]).trackers == ["mlflow", "tensorboard"]
    assert load_config(None, ["tensorboard=false"]).trackers == []
    assert load_config(None, ["trackers=wandb,mlflow"]).trackers == ["wandb", "mlflow"]


@pytest.mark.parametrize("override, message", [
    ("trackers=comet", "config key 'trackers': 'comet' is not allowed; choose one of tensorboard, mlflow, wandb"),
    ("trackers=wandb,wandb", "config key 'trackers': ['wandb', 'wandb'] is not allowed; values must not repeat"),
    ("tensorboard=maybe", "config key 'tensorboard': 'maybe' is not allowed; it must be true or false")])
def test_bad_trackers_name_the_key_and_what_is_allowed(override, message):
    from audio2image.config import ConfigError

    with pytest.raises(ConfigError) as error:
        load_config(None, [override])
    assert str(error.value) == message
