"""The sweep: plan the runs, choose settings on validation, execute them anywhere, collect results.csv."""
from __future__ import annotations

from audio2image.config import BACKBONE_FILE, Config, ConfigError, key_spec, save_config
from audio2image.config_checks import check_backbone
from audio2image.errors import UserError
from audio2image.prepare.store import Store
from audio2image.prepare.stores import check_roots, ensure_store, store_ready
from audio2image.sweep.executors import Job, check_executor, execute, execute_jobs, prepare_side
from audio2image.sweep.grid import (OtherPretraining, check_same_pretraining, pretrain_plan, pretrain_seed_for,
                                    pretrained_sides, transfer_plan)
from audio2image.sweep.selection import run_selection
from audio2image.sweep.results import write_results
from audio2image.training.cores import load_warning
from audio2image.util import log, read_json_or_none, write_json

DATASETS_FILE = "datasets.json"  # what the source and target are, for the report


def run_sweep(config: Config) -> dict:
    """Prepare the stores, pretrain where an init needs it, choose each cell's setting on validation, run the chosen
    settings on every seed, write results.csv (the chosen runs only)."""
    from audio2image.sweep.plan import make_plan  # here: plan.py imports this module's checks

    experiment = config.experiment_dir
    sides = pretrained_sides(config)
    check_roots(config, (*sides, "target"))
    described = check_before_work(config)
    log(make_plan(config)["summary"])  # what it will train, and for how long: `audio2image plan` says more
    loaded = load_warning()
    if loaded:
        log(loaded)
    experiment.mkdir(parents=True, exist_ok=True)
    save_config(config, experiment / "config.yaml")
    write_json(experiment / BACKBONE_FILE, described)
    _warn_unused_single_run_keys(config)
    stores = prepare_stores(config, (*sides, "target"))
    pretrain(config, {side: stores[side] for side in sides})
    write_json(experiment / DATASETS_FILE, {side: describe_store(store) for side, store in stores.items()})
    chosen = run_selection(config, stores["target"].path, lambda runs: execute(runs, config))
    runs = transfer_plan(config, stores["target"].path, chosen)
    execute(runs, config)
    rows = write_results([run.run_dir for run in runs], experiment / "results.csv")
    log(f"results: {len(rows)} of {len(runs)} runs in {experiment / 'results.csv'}")
    if config.cka_items:
        analyse(config, stores["target"], [run.run_dir for run in runs])
    # what each store left out or warned of, named (the first few; the manifest lists all), as the report does
    found = {side: describe_store(store)["findings"] for side, store in stores.items()}
    return {"experiment": str(experiment), "runs": len(runs), "finished": len(rows),
            **({"findings": {side: f for side, f in found.items() if f}} if any(found.values()) else {})}


def check_before_work(config: Config) -> dict:
    """What would fail later, checked before any data is made or any run starts: the backbone and what the grid
    asks of it, the device, published weights. Returns the backbone's description."""
    import torch

    from audio2image.training.initspec import parse_init
    from audio2image.training.published import published_path

    described = check_backbone(config)
    available = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not available.get(config.device, True):
        raise ConfigError(f"config key 'device': {config.device!r} is not available on this machine; use "
                          "device=auto (the best there is) or device=cpu")
    if any(parse_init(init).base == "imagenet" for init in config.inits):
        published_path(config.backbone, config.imagenet_weights)  # InitError naming where they were looked for
    check_executor(config)
    return described


def prepare_stores(config: Config, sides) -> dict[str, Store]:
    """The sides' stores, each prepared as a job of the configured executor (on a cluster: not on the login node;
    several at once where `parallel` allows) unless complete already."""
    jobs = [Job(prepare_side, (config.to_dict(), side), f"the {side}'s store ({getattr(config, side)})", gpu=False)
            for side in sides if not store_ready(config, side)]
    execute_jobs(jobs, config)
    return {side: ensure_store(config, side) for side in sides}  # complete now: opens them


def pretrain(config: Config, stores: dict) -> None:
    """Every pretraining run the grid's inits need (per pretrained side, one per pretraining seed), as jobs of the
    configured executor: in parallel where `parallel` allows; the transfer runs start once they have finished."""
    if not stores:
        return
    pairs = ", ".join(f"{seed}->{pretrain_seed_for(config, seed)}" for seed in config.seeds)
    log(f"pretraining seeds {', '.join(map(str, config.pretrain_seeds))}; transfer seed -> pretraining seed: "
        f"{pairs} (seed number i uses pretraining run i mod {len(config.pretrain_seeds)})")
    plans = [pretrain_plan(config, store.path, side, seed) for side, store in stores.items()
             for seed in config.pretrain_seeds]
    for plan in plans:
        check_same_pretraining(plan)
    execute(plans, config)
    results = {plan.run_dir: read_json_or_none(plan.run_dir / "result.json") or {} for plan in plans}
    failed = {run_dir: result for run_dir, result in results.items() if result.get("status") != "completed"}
    if failed:
        raise PretrainingFailed(_failures(failed, config.pretrain_lr))


class PretrainingFailed(UserError):
    """Pretraining runs that did not complete, so the transfer runs that load them cannot start."""


def _failures(failed: dict, lr: float) -> str:
    """Each failed run's folder, status and what its result.json says; a lower pretrain_lr where one diverged."""
    runs = "; ".join(f"{run_dir} {result.get('status')}: {result.get('message') or 'no reason given'}" if result
                     else f"{run_dir} did not finish (no result.json)" for run_dir, result in failed.items())
    diverged = any(result.get("status") == "diverged" for result in failed.values())
    return (f"pretraining did not complete, so the transfer runs that load it cannot start: {runs}"
            + (f"; a diverged run needs a lower pretrain_lr (now {lr})" if diverged else ""))


def _warn_unused_single_run_keys(config: Config) -> None:
    """A sweep trains with the values of its lists; say so when a one-run key was set to something else."""
    for one, many in (("transfer_lr", "transfer_lrs"), ("transfer_weight_decay", "transfer_weight_decays"),
                      ("pretrain_seed", "pretrain_seeds"), ("init", "inits"), ("fraction", "fractions"),
                      ("seed", "seeds"), ("freeze", "freezes")):
        if getattr(config, one) != key_spec(one)[1] and getattr(config, one) not in getattr(config, many):
            log(f"warning: {one}={getattr(config, one)} sets one run; the sweep uses {many}="
                f"{getattr(config, many)} (set {many} instead)")


def analyse(config: Config, target: Store, run_dirs: list | None = None) -> dict:
    """The analyses that need the networks (per-stage CKA) of the experiment's runs (default: every transfer run
    folder), after the runs; cached in the experiment folder."""
    from audio2image.analysis.similarity import analyse_similarity

    result = analyse_similarity(config, config.experiment_dir, target, run_dirs)
    log(f"similarity: {len(result['comparisons'])} comparisons of networks"
        + "".join(f"; {problem}" for problem in result["problems"]))
    return result


def describe_store(store: Store) -> dict:
    """The facts about a side's data that the report names: dataset, modality, task, labels, split sizes, and what
    its store left out or warned of (prepare.findings.store_findings)."""
    from audio2image.prepare.findings import store_findings

    manifest = store.manifest
    return {"dataset": manifest["dataset"], "modality": store.modality, "task": store.task,
            "labels": len(store.labels), "root": manifest.get("source_root", ""), "store": str(store.path),
            "splits": {name: split["count"] for name, split in manifest.get("splits", {}).items()},
            "findings": store_findings(manifest, store.path)}


_check_same_pretraining = check_same_pretraining  # its earlier name here (tests/test_backbone.py imports it)
