"""The prepared store: fixed-shape arrays per split, memory-mapped, plus labels and a JSON manifest.

Layout of a store folder (the same for audio and images, so either can be a source or a target):

    manifest.json          written last; its presence means the store is complete
    <split>.x.npy          features: fp16 [clips, mels, frames] or uint8 [images, side, side, 3]
    <split>.y.npy          labels: uint8 [n, tags] (multi-label) or int64 [n] (multi-class)
    <split>.ids.json       the item names (clip paths, image paths) in row order

Writing is resumable: items are processed in order, in chunks, by a process pool; after each chunk the rows are
flushed and a small progress file is replaced atomically. A killed preparation restarts from the last recorded
chunk, and the final arrays only get their names once complete. Memory stays bounded by the chunks in flight.
"""
from __future__ import annotations

import concurrent.futures as futures
import multiprocessing
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from audio2image.util import atomic_path, progress, read_json, write_json

MANIFEST = "manifest.json"
SPLITS = ("train", "valid", "test")


@dataclass
class Split:
    x: np.ndarray  # memory-mapped, read-only
    y: np.ndarray
    ids: list[str]

    def __len__(self) -> int:
        return len(self.ids)


class Store:
    """A complete prepared store, opened read-only: `store.split("train").x[i]`."""

    def __init__(self, path: Path):
        self.path = Path(path)
        manifest = self.path / MANIFEST
        if not manifest.is_file():
            raise FileNotFoundError(f"{self.path} is not a prepared store (no {MANIFEST}); run `audio2image prepare`")
        self.manifest = read_json(manifest)
        self._splits: dict[str, Split] = {}

    @property
    def modality(self) -> str:
        return self.manifest["modality"]

    @property
    def task(self) -> str:
        return self.manifest["task"]  # "tagging" (multi-label) or "classification" (multi-class)

    @property
    def labels(self) -> list[str]:
        return self.manifest["labels"]

    def split(self, name: str) -> Split:
        if name not in self._splits:
            self._splits[name] = Split(
                x=np.load(self.path / f"{name}.x.npy", mmap_mode="r"),
                y=np.load(self.path / f"{name}.y.npy"),
                ids=read_json(self.path / f"{name}.ids.json"),
            )
        return self._splits[name]


def is_complete(path: Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


# --- writing -----------------------------------------------------------------------------------------------------
Work = Callable[[list], list]  # a chunk of items -> per item: an array (kept) or a str (the reason it was skipped)


def write_split(out: Path, split: str, items: list, ids: list[str], labels: np.ndarray, work: Work,
                item_shape: tuple[int, ...], dtype, *, pool: futures.Executor | None = None, chunk: int = 16,
                show_progress: bool = True) -> dict:
    """Process `items` with `work` into `out/<split>.x.npy` (+ y, ids), resuming an interrupted run.

    Returns {"count": kept rows, "skipped": [{"item": id, "reason": ...}]}. With a `pool` (see `worker_pool`),
    `work` must be picklable: a module-level function or a functools.partial of one.
    """
    final = out / f"{split}.x.npy"
    state_path = out / f".{split}.progress.json"
    if final.exists() and not state_path.exists():
        return read_json(out / f".{split}.done.json")
    partial = out / f"{split}.x.npy.partial"
    state = read_json(state_path) if state_path.exists() and partial.exists() else None
    if state is None:
        state = {"done": 0, "rows": 0, "kept": [], "skipped": []}
        np.lib.format.open_memmap(partial, mode="w+", dtype=dtype, shape=(len(items), *item_shape)).flush()
        write_json(state_path, state)
    array = np.load(partial, mmap_mode="r+")
    bar = progress(total=len(items), initial=state["done"], desc=f"prepare {split}", unit="item",
                   enabled=show_progress)
    for start, results in _run_chunks(work, items, state["done"], chunk, pool):
        for offset, result in enumerate(results):
            if isinstance(result, str):
                state["skipped"].append({"item": ids[start + offset], "reason": result})
                continue
            array[state["rows"]] = result
            state["rows"] += 1
            state["kept"].append(start + offset)
        array.flush()  # rows reach the file before the progress that counts them
        state["done"] = start + len(results)
        write_json(state_path, state)
        bar.update(len(results))
    bar.close()
    del array
    return _finish_split(out, split, partial, state, ids, labels)


def _finish_split(out: Path, split: str, partial: Path, state: dict, ids: list[str], labels: np.ndarray) -> dict:
    kept = np.asarray(state["kept"], dtype=np.int64)
    _truncate_npy(partial, state["rows"])
    with atomic_path(out / f"{split}.y.npy") as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, labels[kept])
    write_json(out / f"{split}.ids.json", [ids[i] for i in kept])
    summary = {"count": int(state["rows"]), "skipped": state["skipped"]}
    write_json(out / f".{split}.done.json", summary)
    os.replace(partial, out / f"{split}.x.npy")
    os.unlink(out / f".{split}.progress.json")
    return summary


@contextmanager
def worker_pool(workers: int, preload: str):
    """A process pool for a whole preparation (all splits), or None for in-process work when workers <= 1.

    Workers start from a forkserver that has already imported `preload` (a module name), so each worker
    starts in milliseconds instead of re-importing torch; forking the torch-threaded parent itself could deadlock.
    """
    if workers <= 1:
        yield None
        return
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([preload])
    with futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init) as pool:
        yield pool


def _run_chunks(work: Work, items: list, start: int, chunk: int, pool: futures.Executor | None):
    """Yield (start index, results) for consecutive chunks from `start`, in order, a bounded number in flight."""
    starts = range(start, len(items), chunk)
    if pool is None:
        for s in starts:
            yield s, work(items[s:s + chunk])
        return
    in_flight = 2 * pool._max_workers
    pending: dict[int, futures.Future] = {}
    queue = iter(starts)
    for s in queue:
        pending[s] = pool.submit(work, items[s:s + chunk])
        if len(pending) >= in_flight:
            break
    while pending:
        first = min(pending)
        results = pending.pop(first).result()
        nxt = next(queue, None)
        if nxt is not None:
            pending[nxt] = pool.submit(work, items[nxt:nxt + chunk])
        yield first, results


def _worker_init() -> None:
    """One process per core: intra-op threads would only contend. Image workers never load torch."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


def _truncate_npy(path: Path, rows: int) -> None:
    """Shrink a C-ordered .npy file to its first `rows` rows in place: rewrite the header, cut the tail."""
    with open(path, "r+b") as handle:
        version = np.lib.format.read_magic(handle)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        shape, fortran, dtype = read_header[version](handle)
        data_start = handle.tell()
        if shape[0] == rows:
            return
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": fortran,
                  "shape": (rows, *shape[1:])}
        text = repr(header).encode("latin1")
        prefix = 10 if version == (1, 0) else 12
        padded = text + b" " * (data_start - prefix - len(text) - 1) + b"\n"
        handle.seek(prefix)
        handle.write(padded)
        row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        handle.truncate(data_start + rows * row_bytes)


def write_manifest(out: Path, manifest: dict) -> None:
    write_json(out / MANIFEST, manifest)
