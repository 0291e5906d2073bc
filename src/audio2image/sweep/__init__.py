"""The sweep: plan the runs, execute them anywhere, collect results.csv."""
from __future__ import annotations

from audio2image.config import MODALITY, Config, save_config
from audio2image.prepare.stores import ensure_store
from audio2image.sweep.executors import execute
from audio2image.sweep.grid import pretrain_plan, transfer_plan, uses_pretraining
from audio2image.sweep.results import write_results
from audio2image.training.run import train_run
from audio2image.util import log, read_json


def run_sweep(config: Config) -> dict:
    """Prepare both stores, pretrain if an init needs it, run every transfer cell, write results.csv."""
    experiment = config.experiment_dir
    experiment.mkdir(parents=True, exist_ok=True)
    save_config(config, experiment / "config.yaml")
    pretrain = None
    if uses_pretraining(config):
        source = ensure_store(config, config.source)
        pretrain = pretrain_plan(config, source.path)
        _check_same_pretraining(pretrain)
        log(f"pretraining on {config.source} ({MODALITY[config.source]}) in {pretrain.run_dir}")
        train_run(pretrain.config, pretrain.spec, pretrain.run_dir)
    target = ensure_store(config, config.target)
    runs = transfer_plan(config, target.path, pretrain)
    execute(runs, config)
    rows = write_results([run.run_dir for run in runs], experiment / "results.csv")
    log(f"results: {len(rows)} of {len(runs)} runs in {experiment / 'results.csv'}")
    return {"experiment": str(experiment), "runs": len(runs), "finished": len(rows)}


def _check_same_pretraining(pretrain) -> None:
    """Refuse to mix an earlier pretraining made with other settings into this experiment's folder."""
    identity = pretrain.run_dir / "run.json"
    if identity.is_file() and read_json(identity).get("run_id") != pretrain.spec.run_id:
        raise RuntimeError(f"{pretrain.run_dir} holds a pretraining made with other settings; choose another "
                           "experiment name (name=...) or delete that folder")
