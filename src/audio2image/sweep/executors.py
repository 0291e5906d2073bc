"""Executors: run a list of planned runs locally, on a Ray cluster, or as a Slurm job array (submitit).

Every executor calls the same `execute_run` with plain data, and every run writes only to its own folder, so
executors differ in where runs happen, never in what they produce. A finished run is skipped and an interrupted
one resumes from its checkpoint, whichever executor picks it up.
"""
from __future__ import annotations

import concurrent.futures as futures
import dataclasses
import multiprocessing
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from audio2image.config import Config, ConfigError, from_dict
from audio2image.training.cores import usable_cores
from audio2image.training.run import RunSpec, train_run
from audio2image.util import Busy, log, skip_exit_collection


def run_threads(config: Config) -> int:
    """The torch CPU threads each run gets: `threads`, or its share of this machine's cores among `parallel`
    runs (the whole cores this process may use: its CPU affinity, or a smaller cgroup quota such as a container's
    or a Slurm job's, not the whole node). Resolved once, where the sweep is planned, so every executor runs a run
    with the same count (CPU results depend on it: summation order) and two torch jobs never contend for the same
    cores (each then runs several times slower; benchmarks/README.md: threads). A quota counts too: more threads
    than it allows take turns on it, which is the same contention."""
    if config.threads:
        return config.threads
    return max(1, int(usable_cores()) // config.parallel)


def run_cpus(config: Config) -> int:
    """The CPUs a run asks a cluster for (a Ray task's num_cpus, a Slurm task's cpus_per_task): its torch
    threads, or its loader threads where there are more (they run beside the training threads); a store's
    preparation uses `workers` processes, within the same count."""
    return max(config.workers, run_threads(config), 1)


def use_threads(config: Config, processes: int = 1) -> None:
    """Give this process's torch the run's CPU threads (`run_threads`), shared among `processes` that run one
    run together (torchrun's DDP processes on one machine)."""
    import torch

    torch.set_num_threads(max(1, run_threads(config) // processes))


def execute_run(config_values: dict, spec_values: dict, run_dir: str, wait: bool = True) -> dict:
    """Run one planned run from plain data (what crosses process and machine boundaries); with wait=False a run
    another process is training raises util.Busy instead of waiting for it."""
    skip_exit_collection()  # in a worker process that ends after its jobs
    config = from_dict(config_values)
    use_threads(config)
    spec_values = dict(spec_values, store=Path(spec_values["store"]))
    return train_run(config, RunSpec(**spec_values), Path(run_dir), wait=wait)


def _resubmission(*args, **kwargs):
    """submitit's checkpoint hook (a callable's `checkpoint`): on preemption or timeout the same call is requeued,
    and resumes from the checkpoint the run wrote on the signal (training/preemption.py)."""
    import submitit

    return submitit.helpers.DelayedSubmission(execute_run, *args, **kwargs)


execute_run.checkpoint = _resubmission


@dataclass(frozen=True)
class Job:
    """One unit of work for an executor: a module-level function (Ray and submitit send it by reference) called
    with plain data; it takes `wait=False` to raise util.Busy when another process owns its run or store."""

    fn: Callable
    args: tuple
    label: str
    gpu: bool = True  # asks for a GPU where there is one (training); preparing a store does not


def _payload(run) -> tuple[dict, dict, str]:
    spec = dict(vars(run.spec), store=str(run.spec.store))
    return run.config.to_dict(), spec, str(run.run_dir)


def _label(run) -> str:
    spec = run.spec
    if spec.stage == "pretrain":
        return f"{run.run_dir.name}: pretraining on the {spec.extra.get('side', 'source')}, seed {spec.seed}"
    return (f"{run.run_dir.name}: fraction {spec.fraction}, init {spec.extra.get('init_name', spec.init)}, "
            f"seed {spec.seed}, freeze {spec.freeze}")


def execute(runs: list, config: Config) -> None:
    """Train the planned runs that have not finished, on the configured executor, each with run_threads."""
    threads = run_threads(config)
    todo = [dataclasses.replace(run, config=dataclasses.replace(run.config, threads=threads))
            for run in runs if not (run.run_dir / "result.json").is_file()]
    log(f"sweep: {len(runs)} runs, {len(runs) - len(todo)} already finished, {len(todo)} to run "
        f"with the {config.executor} executor, {config.parallel} at a time, {threads} torch threads each")
    execute_jobs([Job(execute_run, _payload(run), _label(run)) for run in todo], config)


def execute_jobs(jobs: list[Job], config: Config) -> None:
    """Run jobs where the config says: here, a local pool, Ray tasks or a Slurm job array."""
    if jobs:
        EXECUTORS[config.executor](jobs, config)


def prepare_side(config_values: dict, side: str, wait: bool = True) -> str:
    """A job: prepare the store of one side of the experiment (synthesising its data first where asked)."""
    from audio2image.prepare.stores import ensure_store

    skip_exit_collection()
    return str(ensure_store(from_dict(config_values), side, wait=wait).path)


def run_local(jobs: list[Job], config: Config) -> None:
    if config.parallel <= 1:
        busy = []  # owned by another process (a second sweep on the same folder): taken last, then waited for
        for index, job in enumerate(jobs, 1):
            log(f"[{index}/{len(jobs)}] {job.label}")
            try:
                job.fn(*job.args, wait=False)
            except Busy as error:
                log(f"  owned by {error.holder}; taking the next one first")
                busy.append(job)
        for job in busy:
            job.fn(*job.args)  # waits for its owner, then reads (or, if the owner died, does) it
        return
    # One process per slot; with GPUs, each slot owns one device.
    context = multiprocessing.get_context("spawn")
    gpus = _gpu_count()
    with futures.ProcessPoolExecutor(config.parallel, mp_context=context, initializer=_pin_slot,
                                     initargs=(gpus, config.parallel)) as pool:
        for done in futures.as_completed([pool.submit(job.fn, *job.args) for job in jobs]):
            done.result()


def _pin_slot(gpus: int, slots: int) -> None:
    """Give each worker process its own GPU (by process order); its CPU threads come with each run."""
    identity = multiprocessing.current_process()._identity
    slot = (identity[0] - 1) if identity else 0
    if gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(slot % gpus)


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def run_ray(jobs: list[Job], config: Config) -> None:
    ray = _ray()
    with executor_session(config):  # the sweep's own, where it has started one
        gpus = 1 if (_gpu_count() or config.ray_address) and config.device != "cpu" else 0
        cpus = run_cpus(config)  # and a GPU for training where there is one
        remotes = {}
        for job in jobs:
            key = (job.fn, job.gpu)
            if key not in remotes:
                remotes[key] = ray.remote(num_cpus=cpus, num_gpus=gpus if job.gpu else 0)(job.fn)
        ray.get([remotes[(job.fn, job.gpu)].remote(*job.args) for job in jobs])


@contextmanager
def executor_session(config: Config):
    """One executor for every stage of a sweep: with executor=ray, Ray is joined (or a local one started) once,
    so preparation, pretraining and the transfer runs share its workers; each start would cost seconds and fresh
    workers that import torch again. Left as found: a Ray the caller had started stays up."""
    ray = _ray() if config.executor == "ray" else None
    if ray is None or ray.is_initialized():
        yield
        return
    if config.ray_address:
        ray.init(address=config.ray_address)
    else:  # a local Ray: room for `parallel` runs of run_threads cores each
        ray.init(num_cpus=config.parallel * run_cpus(config), include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def _ray():
    try:
        import ray
    except ImportError as error:
        raise RuntimeError("executor=ray needs Ray: pip install 'audio2image[ray]'") from error
    return ray


def run_slurm(jobs: list[Job], config: Config, executor=None) -> None:
    """A Slurm job array through submitit; `executor` lets tests pass submitit's LocalExecutor."""
    try:
        import submitit
    except ImportError as error:
        raise RuntimeError("executor=slurm needs submitit: pip install 'audio2image[slurm]'") from error
    if executor is None and config.executor == "submitit-local":  # submitit's own local mode, asked for by name
        executor = submitit.LocalExecutor(folder=config.experiment_dir / "slurm")
        executor.update_parameters(timeout_min=config.slurm_time_min)
    if executor is None:
        executor = submitit.AutoExecutor(folder=config.experiment_dir / "slurm")
        executor.update_parameters(timeout_min=config.slurm_time_min, slurm_partition=config.slurm_partition or None,
                                   gpus_per_node=1 if config.device != "cpu" else 0,
                                   cpus_per_task=run_cpus(config),
                                   slurm_array_parallelism=config.parallel)
    with executor.batch():  # one job array
        submitted = [executor.submit(job.fn, *job.args) for job in jobs]
    for job in submitted:
        job.result()


def check_executor(config: Config) -> None:
    """executor=slurm where no Slurm answers would quietly run everything here through submitit's fallback:
    refuse, before any work, unless submitit's local mode is asked for by name."""
    if config.executor == "slurm" and shutil.which("sbatch") is None:
        raise ConfigError("config key 'executor': 'slurm' but this machine reaches no Slurm (no sbatch on PATH); "
                          "run from a Slurm login node, or use executor=local, or executor=submitit-local for "
                          "submitit's local mode")


EXECUTORS = {"local": run_local, "ray": run_ray, "slurm": run_slurm, "submitit-local": run_slurm}
