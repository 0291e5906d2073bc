"""The sweep: plan the runs, execute them anywhere, collect results.csv."""
from __future__ import annotations

from audio2image.config import Config, save_config
from audio2image.prepare.store import Store
from audio2image.prepare.stores import check_roots, ensure_store
from audio2image.sweep.executors import execute, use_threads
from audio2image.sweep.grid import pretrain_plan, transfer_plan, uses_pretraining
from audio2image.sweep.results import write_results
from audio2image.training.run import train_run
from audio2image.util import log, read_json, write_json

DATASETS_FILE = "datasets.json"  # what the source and target are, for the report


def run_sweep(config: Config) -> dict:
    """Prepare both stores, pretrain if an init needs it, run every transfer cell, write results.csv."""
    experiment = config.experiment_dir
    check_roots(config, ("source", "target") if uses_pretraining(config) else ("target",))
    experiment.mkdir(parents=True, exist_ok=True)
    save_config(config, experiment / "config.yaml")
    stores = {}
    if uses_pretraining(config):
        stores["source"] = ensure_store(config, "source")
        pretrain = pretrain_plan(config, stores["source"].path)
        _check_same_pretraining(pretrain)
        log(f"pretraining on {config.source} ({stores['source'].modality} {stores['source'].task}) "
            f"in {pretrain.run_dir}")
        use_threads(config)  # the pretraining runs here, in the sweep's process
        train_run(pretrain.config, pretrain.spec, pretrain.run_dir)
    stores["target"] = ensure_store(config, "target")
    write_json(experiment / DATASETS_FILE, {side: describe_store(store) for side, store in stores.items()})
    runs = transfer_plan(config, stores["target"].path)
    execute(runs, config)
    rows = write_results([run.run_dir for run in runs], experiment / "results.csv")
    log(f"results: {len(rows)} of {len(runs)} runs in {experiment / 'results.csv'}")
    if config.cka_items:
        analyse(config, stores["target"])
    return {"experiment": str(experiment), "runs": len(runs), "finished": len(rows)}


def analyse(config: Config, target: Store) -> dict:
    """The analyses that need the networks (per-stage CKA), after the runs; cached in the experiment folder."""
    from audio2image.analysis.similarity import analyse_similarity

    result = analyse_similarity(config, config.experiment_dir, target)
    log(f"similarity: {len(result['comparisons'])} comparisons of networks"
        + "".join(f"; {problem}" for problem in result["problems"]))
    return result


def describe_store(store: Store) -> dict:
    """The facts about a side's data that the report names: dataset, modality, task, labels, split sizes."""
    manifest = store.manifest
    return {"dataset": manifest["dataset"], "modality": store.modality, "task": store.task,
            "labels": len(store.labels), "root": manifest.get("source_root", ""), "store": str(store.path),
            "splits": {name: split["count"] for name, split in manifest.get("splits", {}).items()}}


def _check_same_pretraining(pretrain) -> None:
    """Refuse to mix an earlier pretraining made with other settings into this experiment's folder."""
    identity = pretrain.run_dir / "run.json"
    if identity.is_file() and read_json(identity).get("run_id") != pretrain.spec.run_id:
        raise RuntimeError(f"{pretrain.run_dir} holds a pretraining made with other settings; choose another "
                           "experiment name (name=...) or delete that folder")
