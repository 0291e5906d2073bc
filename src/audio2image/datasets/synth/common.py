"""The writer machinery shared by the synthetic-dataset writers.

It owns the folder protocol that makes both writers idempotent and resumable (`PARTIAL` claims a folder
when writing starts, `MARKER` with the parameters is written last, so a folder is either recognisably
complete, recognisably ours to resume, or left alone), the job runner that renders files in order or in
a forkserver process pool, and the per-item random generators: one per clip or image, seeded by
(seed, stream, index), so content depends neither on `workers` nor on how many items are written.
"""
from __future__ import annotations

import shutil
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from audio2image.util import progress as progress_bar, read_json_or_none, write_json

MARKER = ".synth.json"  # written last: the folder holds a complete dataset made with these parameters
PARTIAL = ".synth.partial"  # written first: the folder is ours to overwrite (and resume, if parameters match)
FORMAT_VERSION = 1  # bump when the content changes, so existing synthetic folders are rewritten
# Random streams: which part of the content a generator seeded by (seed, stream, index) draws.
STREAM_SCENE, STREAM_AUDIO, STREAM_NAMES, STREAM_IMAGE = 1, 2, 3, 4


def completed(out: Path, params: dict) -> dict | None:
    """The summary of a complete dataset in `out` made with `params`, else None."""
    marker = read_json_or_none(out / MARKER)
    return marker["summary"] if isinstance(marker, dict) and marker.get("params") == params else None


def claim(out: Path, params: dict, subtree: str) -> None:
    """Make `out` ours to (re)write, keeping the files of an interrupted run with the same parameters.

    A folder holding `subtree` that synth did not make (no marker) is refused, so real data is never
    deleted. The order of steps keeps a claim file present at every moment, so a kill anywhere leaves
    a folder that the next call recognises as its own.
    """
    out.mkdir(parents=True, exist_ok=True)
    owned = (out / MARKER).exists() or (out / PARTIAL).exists()
    if not owned and (out / subtree).exists():
        raise FileExistsError(f"{out / subtree} exists and was not made by synth (no {MARKER}); "
                              "refusing to overwrite it")
    if not (out / PARTIAL).exists():
        write_json(out / PARTIAL, {})
    (out / MARKER).unlink(missing_ok=True)
    if read_json_or_none(out / PARTIAL) != params:  # other parameters (or none yet): start clean
        shutil.rmtree(out / subtree, ignore_errors=True)
        write_json(out / PARTIAL, params)


def finish(out: Path, params: dict, summary: dict) -> dict:
    write_json(out / MARKER, {"params": params, "summary": summary})
    (out / PARTIAL).unlink(missing_ok=True)
    return summary


def run_jobs(task, jobs: list, workers: int, show: bool, desc: str) -> list:
    """task(job) for every job, in order; in a process pool when workers > 1."""
    bar = progress_bar(total=len(jobs), enabled=show, desc=desc, unit="file")
    results = []
    try:
        if workers <= 1 or len(jobs) < 2:
            for job in jobs:
                results.append(task(job))
                bar.update()
        else:
            # Not fork: the caller may hold torch/OpenMP threads, which a forked child can deadlock on.
            with ProcessPoolExecutor(workers, mp_context=get_context("forkserver")) as pool:
                for result in pool.map(task, jobs, chunksize=max(1, len(jobs) // (workers * 8))):
                    results.append(result)
                    bar.update()
    finally:
        bar.close()
    return results


def rng_for(seed: int, stream: int, index: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, stream, index])


def pick(rng: np.random.Generator, weights: dict):
    keys = list(weights)
    p = np.array([weights[k] for k in keys], dtype=float)
    return keys[rng.choice(len(keys), p=p / p.sum())]
