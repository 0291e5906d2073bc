"""Experiment trackers (config `trackers`: TensorBoard, MLflow, W&B): every run, pretraining or transfer, logged
with its flat config, the tags that identify it, every number of each epoch's metrics line and its test result.

A run's trackers sit behind one object (`Trackers`): `tracking` starts them for a run, `Saver.record` hands them
each epoch's line (`log`) and the run its result (`finish`). Each tracker works on a thread of its own, in order,
so a slow or unreachable server never holds up training; a tracker that fails (package missing, bad URI, full
disk, no server) is turned off for the rest of the process with one line saying why, and the run goes on. Each
package is imported when its tracker starts, so a run without trackers never imports them.

A resumed run continues its tracker runs: W&B's run id and MLflow's `run_id` tag are the run's own id. Epochs that
the resumed run trains again (those after its last checkpoint) are logged again, at the same epoch.

    >>> with tracking(training) as trackers:  # training: run._Training
    ...     trackers.log({"epoch": 1, "train_loss": 0.7})
    ...     trackers.finish({"status": "completed", "test": {"top1": 0.5}, "best_epoch": 1})
"""
from __future__ import annotations

import importlib
import math
import queue
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from audio2image.targets import target_name
from audio2image.util import log

FINISH_SECONDS = 30.0  # how long a finished run waits for its trackers to write what they were given
STOP_SECONDS = 5.0  # the same for a run that stopped otherwise (SIGTERM, an error): it is on its way out
MLFLOW_BATCH = 100  # MLflow takes at most 100 params (or tags) in one log_batch
WANDB_TAG_CHARS = 64  # W&B refuses longer tags
_OFF: dict[str, str] = {}  # trackers turned off in this process -> why (each said once)


class TrackerOff(Exception):
    """A tracker cannot work here; the message says why and what to do."""


def turn_off(name: str, reason: str) -> None:
    """Turn a tracker off for the rest of this process, saying so once."""
    if name not in _OFF:
        _OFF[name] = reason
        log(f"{name} tracking off: {reason}")


def _reason(error: Exception) -> str:
    if isinstance(error, TrackerOff):
        return str(error)
    text = " ".join(str(error).split()) or "no message"
    return f"{type(error).__name__}: {text[:300]}"


def _need(module: str, extra: str):
    """Import a tracker's package, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise TrackerOff(f"its package is missing ({error}); pip install 'audio2image[{extra}]'") from error


@dataclass(frozen=True)
class TrackedRun:
    """A run as the trackers see it."""

    run_id: str  # the run's own id (its folder's name in an experiment): the trackers' run id and name
    stage: str  # pretrain | transfer: W&B's job_type
    group: str  # the cell (init, fraction, freeze; a pretraining's side): W&B's group
    tags: dict  # what identifies the run: stage, dataset, init, fraction, seed, freeze, lr, weight decay, ...
    config: dict  # the run's flat config
    experiment: str  # the experiment's name: MLflow's experiment, W&B's default project
    folder: Path  # the experiment's folder: MLflow's default store and W&B's files go there
    run_dir: Path  # the run's folder: TensorBoard's events go there


def describe_run(config, spec, run_dir: Path, identity: dict) -> TrackedRun:
    """What the trackers record of a run (`spec`: run.RunSpec; `identity`: its run.json)."""
    stage, run_dir = spec.stage, Path(run_dir)
    run_id = spec.run_id or run_dir.name
    tags = {"stage": stage, "dataset": identity["dataset"], "run_id": run_id, "backbone": config.backbone,
            "seed": spec.seed, "lr": getattr(config, f"{stage}_lr"),
            "weight_decay": getattr(config, f"{stage}_weight_decay")}
    if stage == "pretrain":
        side = spec.extra.get("side", "source")
        tags.update(side=side, pretrain_seed=spec.seed, cell=f"pretrain side={side}")
    else:
        init = spec.extra.get("init_name", spec.init)
        tags.update(init=init, fraction=spec.fraction, freeze=spec.freeze,
                    cell=f"init={init} fraction={spec.fraction} freeze={spec.freeze}",
                    target=target_name(config.target, config.target_root))  # a study's targets told apart
        if spec.extra.get("pretrain_seed") is not None:
            tags["pretrain_seed"] = spec.extra["pretrain_seed"]
    return TrackedRun(run_id, stage, tags["cell"], tags, config.to_dict(), config.name,
                      Path(config.experiment_dir).resolve(), run_dir.resolve())


def numbers(values: dict) -> dict:
    """The numeric values of a metrics line or result (not flags)."""
    return {key: value for key, value in values.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)}


class TensorBoardTracker:
    """Events in RUN_DIR/tensorboard: each epoch's numbers by their names, the test metrics as test_*, the config
    and tags as text."""

    name = "tensorboard"

    def __init__(self, config):
        self.writer = None

    def start(self, run: TrackedRun) -> None:
        module = _need("torch.utils.tensorboard", "tensorboard")
        self.writer = module.SummaryWriter(str(run.run_dir / "tensorboard"))
        self.writer.add_text("tags", _table(run.tags))
        self.writer.add_text("config", _table(run.config))

    def log(self, line: dict) -> None:
        for key, value in numbers(line).items():
            if key != "epoch":
                self.writer.add_scalar(key, value, line["epoch"])
        self.writer.flush()  # a killed run keeps its epochs

    def finish(self, result: dict) -> None:
        for key, value in numbers(result.get("test", {})).items():
            self.writer.add_scalar(f"test_{key}", value, result.get("best_epoch") or 0)
        self.writer.close()

    def stop(self) -> None:
        self.writer.close()


def _table(values: dict) -> str:
    return "\n".join(["| key | value |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in values.items())])


class MLflowTracker:
    """An MLflow run per run, in the experiment named as ours, in `mlflow_uri` (default: sqlite in the experiment's
    folder, artifacts beside it); a resumed run continues the MLflow run whose tag `run_id` is its id."""

    name = "mlflow"

    def __init__(self, config):
        self.uri = config.mlflow_uri
        self.client = self.id = None

    def start(self, run: TrackedRun) -> None:
        _need("mlflow", "mlflow")
        from mlflow.entities import Param, RunTag
        from mlflow.tracking import MlflowClient

        artifacts = None
        if not self.uri:
            run.folder.mkdir(parents=True, exist_ok=True)
            self.uri = f"sqlite:///{run.folder / 'mlflow.db'}"
            artifacts = (run.folder / "mlflow-artifacts").as_uri()
        self.client = MlflowClient(tracking_uri=self.uri)
        experiment = self._experiment(run.experiment, artifacts)
        found = self.client.search_runs([experiment], f"tags.run_id = '{run.run_id}'", max_results=1,
                                        order_by=["attributes.start_time DESC"])
        tags = {key: str(value) for key, value in run.tags.items()}
        if found:
            self.id, logged = found[0].info.run_id, found[0].data.params
            self.client.update_run(self.id, status="RUNNING")
        else:
            self.id, logged = self.client.create_run(experiment, tags=tags, run_name=run.run_id).info.run_id, {}
        params = [Param(key, str(value)) for key, value in run.config.items() if key not in logged]
        for at in range(0, len(params), MLFLOW_BATCH):  # params are written once: a resumed run adds none
            self.client.log_batch(self.id, params=params[at:at + MLFLOW_BATCH])
        self.client.log_batch(self.id, tags=[RunTag(key, value) for key, value in tags.items()])

    def _experiment(self, name: str, artifacts: str | None) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is None:
            try:
                return self.client.create_experiment(name, artifact_location=artifacts)
            except Exception:  # noqa: BLE001 - another process may have created it meanwhile
                found = self.client.get_experiment_by_name(name)
                if found is None:
                    raise
        if found.lifecycle_stage != "active":
            raise TrackerOff(f"experiment {name!r} is deleted in {self.uri}; restore it (mlflow experiments "
                             "restore) or choose another experiment name")
        return found.experiment_id

    def _metrics(self, values: dict, step: int, prefix: str = "") -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        self.client.log_batch(self.id, metrics=[Metric(prefix + key, float(value), stamp, step)
                                                for key, value in numbers(values).items() if key != "epoch"])

    def log(self, line: dict) -> None:
        self._metrics(line, line["epoch"])

    def finish(self, result: dict) -> None:
        from mlflow.entities import RunTag

        self._metrics(result.get("test", {}), result.get("best_epoch") or 0, prefix="test_")
        self.client.log_batch(self.id, tags=[RunTag("status", str(result.get("status"))),
                                             RunTag("best_epoch", str(result.get("best_epoch")))])
        self.client.set_terminated(self.id, "FINISHED" if result.get("status") == "completed" else "FAILED")

    def stop(self) -> None:
        self.client.set_terminated(self.id, "KILLED")


class WandbTracker:
    """A W&B run per run: id and name the run's id, group its cell, job_type its stage, project `wandb_project`
    (default: the experiment's name), files in the experiment's folder (wandb/). W&B's own mode holds
    (WANDB_MODE=offline or `wandb offline`: written to disk only, for `wandb sync`)."""

    name = "wandb"

    def __init__(self, config):
        self.project = config.wandb_project
        self.run = None

    def start(self, run: TrackedRun) -> None:
        wandb = _need("wandb", "wandb")
        run.folder.mkdir(parents=True, exist_ok=True)
        tags = [f"{key}={value}"[:WANDB_TAG_CHARS] for key, value in run.tags.items()
                if key not in ("run_id", "cell")]
        # console off: a sweep prints several runs' lines into one process's output, and each run has its own files
        self.run = wandb.init(project=self.project or run.experiment, name=run.run_id,
                              id=re.sub(r"[^\w.-]", "-", run.run_id), group=run.group, job_type=run.stage,
                              config={**run.config, "run": run.tags}, tags=tags, dir=str(run.folder),
                              resume="allow", reinit=True, settings=wandb.Settings(console="off"))
        self.run.define_metric("epoch")
        self.run.define_metric("*", step_metric="epoch")  # plotted by epoch, also across a resume

    def log(self, line: dict) -> None:
        self.run.log(numbers(line))

    def finish(self, result: dict) -> None:
        self.run.summary.update({**{f"test_{key}": value for key, value in numbers(result.get("test", {})).items()},
                                 "status": result.get("status"), "best_epoch": result.get("best_epoch")})
        self.run.finish(exit_code=0 if result.get("status") == "completed" else 1)

    def stop(self) -> None:
        self.run.finish(exit_code=1)


BACKENDS = {"tensorboard": TensorBoardTracker, "mlflow": MLflowTracker, "wandb": WandbTracker}


class _Worker:
    """One tracker's calls, made in order on a thread of its own; after a failure it is turned off and the rest
    of its calls are dropped."""

    def __init__(self, tracker):
        self.tracker, self.calls = tracker, queue.SimpleQueue()
        self.thread = threading.Thread(target=self._work, name=f"{tracker.name} tracker", daemon=True)
        self.thread.start()

    def put(self, method: str, *args) -> None:
        self.calls.put((method, args))

    def end(self, method: str, *args) -> None:
        self.put(method, *args)
        self.calls.put(None)

    def _work(self) -> None:
        failed = False
        while (call := self.calls.get()) is not None:
            method, args = call
            if failed:
                continue
            try:
                getattr(self.tracker, method)(*args)
            except Exception as error:  # noqa: BLE001 - whatever a tracker meets, the run goes on without it
                failed = True
                turn_off(self.tracker.name, _reason(error))


class Trackers:
    """The trackers one run feeds (none: every call does nothing)."""

    def __init__(self, workers: list[_Worker] | None = None):
        self.workers = workers or []

    @classmethod
    def start(cls, config, run: TrackedRun) -> Trackers:
        """The config's trackers (those not turned off in this process), each started for `run`."""
        workers = [_Worker(BACKENDS[name](config)) for name in config.trackers if name not in _OFF]
        for worker in workers:
            worker.put("start", run)
        return cls(workers)

    def log(self, line: dict) -> None:
        """An epoch's metrics line (metrics.jsonl's): its numbers, by epoch."""
        for worker in self.workers:
            worker.put("log", dict(line))

    def finish(self, result: dict) -> dict:
        """The run's result (result.json's): its test metrics and status; the trackers' runs end. Returns it."""
        self._end(FINISH_SECONDS, "finish", result)
        return result

    def close(self) -> None:
        """End the trackers' runs that `finish` did not (the run stopped otherwise: they are continued when it
        resumes)."""
        self._end(STOP_SECONDS, "stop")

    def _end(self, seconds: float, method: str, *args) -> None:
        workers, self.workers = self.workers, []
        for worker in workers:
            worker.end(method, *args)
        deadline = time.monotonic() + seconds
        for worker in workers:
            worker.thread.join(max(0.0, deadline - time.monotonic()))
            if worker.thread.is_alive():  # left to finish on its own, or not: the next runs go without it
                turn_off(worker.tracker.name, f"no answer within {math.ceil(seconds)} s")


@contextmanager
def tracking(training):
    """The trackers of a run about to train (`training`: run._Training), started on the main process (DDP's
    others track nothing); the block hands them to the Saver and the result to `finish`."""
    config, spec = training.config, training.spec
    started = config.trackers and training.is_main
    trackers = (Trackers.start(config, describe_run(config, spec, training.run_dir, spec.identity(training.store)))
                if started else Trackers())
    try:
        yield trackers
    finally:
        trackers.close()
