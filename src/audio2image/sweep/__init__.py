"""The sweep: plan the runs, choose settings on validation, execute them anywhere, collect results.csv."""
from __future__ import annotations

from pathlib import Path

from audio2image.config import BACKBONE_FILE, Config, ConfigError, key_spec, save_config
from audio2image.config_checks import check_backbone
from audio2image.errors import UserError
from audio2image.prepare.store import Store
from audio2image.prepare.stores import ensure_store, store_ready
from audio2image.sides import check_all_roots, pretrained_sides
from audio2image.sweep.executors import Job, check_executor, execute, execute_jobs, executor_session, prepare_side
from audio2image.sweep.grid import (OtherPretraining, check_same_pretraining, pretrain_plan, pretrain_seed_for,
                                    transfer_plan)
from audio2image.sweep.selection import run_selection, tuning_plan
from audio2image.sweep.results import write_results, write_rows
from audio2image.targets import TargetView, is_study, target_name, target_views
from audio2image.training.cores import load_warning
from audio2image.util import log, read_json_or_none, write_json

DATASETS_FILE = "datasets.json"  # what the source and target are, for the report


def run_sweep(config: Config) -> dict:
    """Prepare the stores, pretrain where an init needs it (once, for every target), choose each cell's setting on
    validation, run the chosen settings on every seed, write results.csv (the chosen runs only). In a study of
    several targets each target is done as a single-target experiment of its own (targets.py), its files in
    E/targets/<slug>/, and E/results.csv holds every target's rows."""
    from audio2image.sweep.plan import make_plan  # here: plan.py imports this module's checks

    views = target_views(config)
    config = config if is_study(config) else views[0].config  # one entry of `targets` is that one target
    experiment, sides = config.experiment_dir, pretrained_sides(config)
    check_all_roots(config)
    described = check_before_work(config)
    log(make_plan(config)["summary"])  # what it will train, and for how long: `audio2image plan` says more
    loaded = load_warning()
    if loaded:
        log(loaded)
    experiment.mkdir(parents=True, exist_ok=True)
    save_config(config, experiment / "config.yaml")
    write_json(experiment / BACKBONE_FILE, described)
    _warn_unused_single_run_keys(config)
    with executor_session(config):
        opened = _prepare(config, [(config, side) for side in sides] + [(view.config, "target") for view in views])
        stores, targets = dict(zip(sides, opened)), opened[len(sides):]
        pretrain(config, stores)
        done = transfer_to_targets(config, views, stores, targets)
    # what each store left out or warned of, named (the first few; the manifest lists all), as the report does
    found = {side: describe_store(store)["findings"] for side, store in stores.items()}
    found.update({_target_key(view, views): describe_store(store)["findings"] for view, store in zip(views, targets)})
    return {"experiment": str(experiment), "runs": sum(d["runs"] for d in done.values()),
            "finished": sum(d["finished"] for d in done.values()), **({"targets": done} if len(views) > 1 else {}),
            **({"findings": {side: f for side, f in found.items() if f}} if any(found.values()) else {})}


def _target_key(view: TargetView, views: list) -> str:
    return f"target {view.name}" if len(views) > 1 else "target"


def transfer_to_targets(config: Config, views: list[TargetView], stores: dict, targets: list[Store]) -> dict:
    """Per target (its view, its store): datasets.json, selection.json, the chosen runs, results.csv and CKA in its
    folder; in a study also E/results.csv with every target's rows. Returns per target its runs and finished rows."""
    study = len(views) > 1
    for view, target in zip(views, targets):
        view.folder.mkdir(parents=True, exist_ok=True)
        if study:
            save_config(view.config, view.folder / "config.yaml")
        sides = {side: store for side, store in stores.items() if side != "control" or view.config.control}
        write_json(view.folder / DATASETS_FILE, {side: describe_store(store)
                                                  for side, store in {**sides, "target": target}.items()})
    tuning = [run for view, target in zip(views, targets) for run in tuning_plan(view.config, target.path)]
    if study and tuning:  # every target's tuning runs in one batch: the executor keeps `parallel` runs busy
        execute(tuning, config)
    finals = []
    for view, target in zip(views, targets):
        if study and tuning:
            log(f"target {view.name} ({view.folder}):")  # the selection's lines that follow are this target's
        chosen = run_selection(view.config, target.path, lambda runs: execute(runs, config), view.folder)
        finals.append(transfer_plan(view.config, target.path, chosen))
    execute([run for runs in finals for run in runs], config)
    rows = [write_results([run.run_dir for run in runs], view.folder / "results.csv", view.name)
            for view, runs in zip(views, finals)]
    if study:
        write_rows([row for part in rows for row in part], config.experiment_dir / "results.csv")
    for view, runs, part in zip(views, finals, rows):
        log(f"results: {len(part)} of {len(runs)} runs in {view.folder / 'results.csv'}")
    if config.cka_items:
        for view, target, runs in zip(views, targets, finals):
            analyse(view.config, target, [run.run_dir for run in runs], view.folder)
    return {view.name: {"folder": str(view.folder), "runs": len(runs), "finished": len(part)}
            for view, runs, part in zip(views, finals, rows)}


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
    return dict(zip(sides, _prepare(config, [(config, side) for side in sides])))


def _prepare(config: Config, wanted: list[tuple[Config, str]]) -> list[Store]:
    """The store of each (config, side): a target's view names its own target."""
    jobs = [Job(prepare_side, (each.to_dict(), side),
                f"the {side}'s store ({target_name(getattr(each, side), each.root_of(side))})", gpu=False)
            for each, side in wanted if not store_ready(each, side)]
    execute_jobs(jobs, config)
    return [ensure_store(each, side) for each, side in wanted]  # complete now: opens them


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


def analyse(config: Config, target: Store, run_dirs: list | None = None, folder: Path | None = None) -> dict:
    """The analyses that need the networks (per-stage CKA) of the experiment's runs (default: every transfer run
    folder), after the runs; cached in `folder` (default: the experiment folder; a study's target: its own)."""
    from audio2image.analysis.similarity import analyse_similarity

    result = analyse_similarity(config, config.experiment_dir, target, run_dirs, folder)
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
