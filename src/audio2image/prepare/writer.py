"""Writing a prepared store's splits (see prepare.store for the layout): resumable, in chunks, by a process pool.

Items are processed in order, in chunks. A worker computes a chunk's rows and writes them itself, straight into
`<split>.x.npy.partial` at their items' places (one `pwrite` per row: the rows never travel through a pipe, which
cost as much per audio row as the mel itself; benchmarks/README.md: prepare_audio.py). The writing process
receives only what each item became (kept, with its sums, or the reason it was skipped), moves rows down over the
places of skipped items, and replaces a small progress file atomically after each chunk. A killed preparation
restarts from the last recorded chunk, and the final arrays only get their names once complete. Memory stays
bounded by the chunks in flight: rows go to the page cache, not to any process's memory.

    >>> write_splits(out, {"train": SplitItems(paths, ids, labels)}, work, (128, 1819), np.float16, pool=pool)
"""
from __future__ import annotations

import collections
import concurrent.futures as futures
import hashlib
import json
import multiprocessing
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, NamedTuple

import numpy as np
import threadpoolctl

from audio2image.prepare.store import _npy_layout
from audio2image.util import atomic_path, progress, read_json_or_none, write_json

# a chunk of items -> per item, in order (a list or an iterator): an array or a Row (kept), or a str (the reason
# it was skipped)
Work = Callable[[list], Iterable]


class Row(NamedTuple):
    """A kept item with per-item sums (arrays or numbers) that the split accumulates over its kept rows, e.g. a
    spectrogram's band sums: the worker that made the row computes them, so nothing reads the store back; and a
    warning about it, if any (a small image), which the split lists as it lists skipped items."""

    x: np.ndarray | None  # None once the worker has written it into the store
    sums: dict
    warning: str = ""


@dataclass
class SplitItems:
    items: list  # what `work` receives (paths)
    ids: list[str]  # the names stored in <split>.ids.json
    labels: np.ndarray  # one row per item


def split_signature(split: SplitItems, settings: dict, item_shape: tuple[int, ...], dtype) -> str:
    """A hash of what decides a split's rows: its item ids and labels, the settings `work` runs with (the dataset's
    root among them: ids are relative to it), the row shape.

    An interrupted or finished split is reused only under the same signature, so a preparation run again into the
    same folder with other settings or other data redoes that split instead of mixing old rows with new ones.
    """
    described = {"settings": settings, "shape": list(item_shape), "dtype": np.dtype(dtype).str,
                 "ids": list(split.ids)}
    digest = hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode())
    digest.update(np.ascontiguousarray(split.labels).tobytes())
    return digest.hexdigest()[:16]


def split_signatures(splits: dict[str, SplitItems], settings: dict, item_shape: tuple[int, ...], dtype) -> dict:
    return {name: split_signature(split, settings, item_shape, dtype) for name, split in splits.items()}


def write_splits(out: Path, splits: dict[str, SplitItems], work: Work, item_shape: tuple[int, ...], dtype, *,
                 signatures: dict[str, str] | None = None, pool: WorkerPool | None = None, chunk: int = 16,
                 show_progress: bool = True) -> dict:
    """Process every split's items with `work` into `out/<split>.x.npy` (+ y, ids), resuming an interrupted run.

    One pipeline runs over the chunks of all splits in turn, so workers do not idle while a small split drains.
    `signatures`: `split_signatures` of the splits with the settings `work` runs with (default: no settings).
    Returns {split: {"count": kept rows, "skipped": [{"item": id, "reason": ...}], "warned": the same for rows kept
    with a `Row.warning`, "sums": {...} where `work` returns `Row`s}}. With a `pool` (see `worker_pool`), `work`
    must be picklable: a module-level function or a functools.partial of one.
    """
    signatures = signatures or split_signatures(splits, {}, item_shape, dtype)
    summaries, partials = {}, {}
    for name, split in splits.items():
        signature = signatures[name]
        done = read_json_or_none(out / f".{name}.done.json") or {}
        finished = (out / f"{name}.x.npy").exists() and not (out / f".{name}.progress.json").exists()
        if finished and done.get("signature") == signature:
            summaries[name] = {k: v for k, v in done.items() if k != "signature"}
        else:
            partials[name] = _PartialSplit(out, name, split, item_shape, dtype, signature)
    chunks = [(name, start) for name, partial in partials.items()
              for start in range(partial.state["done"], len(partial.split.items), chunk)]
    bar = progress(total=sum(len(p.split.items) for p in partials.values()),
                   initial=sum(p.state["done"] for p in partials.values()), desc="prepare", unit="item",
                   enabled=show_progress)
    calls = (partials[name].chunk_call(work, start, chunk) for name, start in chunks)
    for (name, start), results in zip(chunks, _in_order(calls, pool)):
        partials[name].add(start, results)
        bar.update(len(results))
    bar.close()
    summaries.update({name: partial.finish() for name, partial in partials.items()})
    return {name: summaries[name] for name in splits}


def write_chunk(work: Work, items: list, ids: list[str], path: str, first_place: int, layout: tuple) -> list:
    """Run `work` on a chunk of items and write each kept row into the partial file at its item's place
    (`first_place` + its position in the chunk); returns `work`'s results with every row replaced by None
    (a `Row`'s sums kept). Runs in a pool worker: all that goes back to the writing process is small.

    Each row is written as soon as `work` gives it, so a `work` that yields its results may reuse one row's
    memory for the next (prepare.audio does: no fresh pages per clip)."""
    data_start, row_bytes, item_shape, dtype = layout
    results = []
    handle = os.open(path, os.O_WRONLY)
    try:
        for offset, result in enumerate(work(items)):
            if not isinstance(result, str):
                row = np.ascontiguousarray(result.x if isinstance(result, Row) else result, dtype=dtype)
                if row.shape != item_shape:  # rows are raw bytes: a [3, 2] row must not pass as a [2, 3] one
                    raise ValueError(f"{ids[offset]}: got shape {row.shape}, the store holds {item_shape}")
                os.pwrite(handle, row.data, data_start + (first_place + offset) * row_bytes)
                result = result._replace(x=None) if isinstance(result, Row) else None
            results.append(result)
    finally:
        os.close(handle)
    return results


class _PartialSplit:
    """A split being written: `<split>.x.npy.partial` plus `.<split>.progress.json`, which counts only rows that
    reached their final place, so a killed run resumes after the last recorded chunk.

    Rows are written with plain file writes, not through a memory map: mapped pages would count in the
    process's resident memory, which would then grow with the dataset (benchmarks/README.md: peak_memory.py).
    The first `state["rows"]` rows of the file are final; a chunk's rows arrive at their items' places and are
    moved down over skipped items' places as the chunk is recorded (only after a skip; in-kernel, page cache to
    page cache). Later chunks in flight write only above the chunk being recorded, so nothing collides.
    """

    def __init__(self, out: Path, name: str, split: SplitItems, item_shape: tuple[int, ...], dtype, signature: str):
        self.out, self.name, self.split = out, name, split
        self.item_shape, self.dtype = tuple(item_shape), np.dtype(dtype)
        self.path = out / f"{name}.x.npy.partial"
        self.state_path = out / f".{name}.progress.json"
        state = read_json_or_none(self.state_path) if self.path.exists() else None
        if state is None or state.get("signature") != signature:  # none yet, or made from other items/settings
            state = {"done": 0, "rows": 0, "kept": [], "skipped": [], "warned": [], "sums": {},
                     "signature": signature}
            shape = (len(split.items), *item_shape)
            np.lib.format.open_memmap(self.path, mode="w+", dtype=dtype, shape=shape).flush()  # header, sparse body
            write_json(self.state_path, state)
        self.state = state
        self.sums = {k: np.asarray(v, dtype=np.float64) for k, v in state.get("sums", {}).items()}
        self.row_bytes = int(np.prod(item_shape, dtype=np.int64)) * self.dtype.itemsize
        self.data_start = _npy_layout(self.path)[1]
        self.handle = os.open(self.path, os.O_RDWR)

    def chunk_call(self, work: Work, start: int, chunk: int) -> tuple:
        """The call (function, arguments) that computes and writes the chunk of items from `start`."""
        end = start + chunk
        layout = (self.data_start, self.row_bytes, self.item_shape, self.dtype.str)
        return write_chunk, (work, self.split.items[start:end], self.split.ids[start:end], str(self.path), start,
                             layout)

    def add(self, start: int, results: list) -> None:
        state = self.state
        for offset, result in enumerate(results):
            if isinstance(result, str):
                state["skipped"].append({"item": self.split.ids[start + offset], "reason": result})
                continue
            if isinstance(result, Row):
                if result.warning:
                    state["warned"].append({"item": self.split.ids[start + offset], "reason": result.warning})
                for key, value in result.sums.items():
                    self.sums[key] = self.sums.get(key, 0.0) + np.asarray(value, dtype=np.float64)
            if start + offset != state["rows"]:  # an earlier item was skipped: move the row down to its place
                self._move_row(start + offset, state["rows"])
            state["rows"] += 1
            state["kept"].append(start + offset)
        state["done"] = start + len(results)
        state["sums"] = {k: v.tolist() for k, v in self.sums.items()}
        # Atomic but not fsynced: a killed preparation resumes from it (the OS keeps both files' writes); a power
        # cut could lose rows as well as progress, so an fsync here alone would not make that safe, and it cost a
        # large share of the preparation time (benchmarks/README.md: progress files).
        write_json(self.state_path, state, sync=False, indent=None)  # after every chunk: the fast encoder

    def _move_row(self, source: int, target: int) -> None:
        offsets = [self.data_start + place * self.row_bytes for place in (source, target)]
        left = self.row_bytes
        while left:
            try:  # in the kernel where it can (Linux, most file systems), else read and write
                moved = os.copy_file_range(self.handle, self.handle, left, offsets[0], offsets[1])
            except (AttributeError, OSError):
                moved = os.pwrite(self.handle, os.pread(self.handle, left, offsets[0]), offsets[1])
            offsets = [offset + moved for offset in offsets]
            left -= moved

    def finish(self) -> dict:
        os.close(self.handle)
        return _finish_split(self.out, self.name, self.path, self.state, self.split.ids, self.split.labels)


def _finish_split(out: Path, split: str, partial: Path, state: dict, ids: list[str], labels: np.ndarray) -> dict:
    kept = np.asarray(state["kept"], dtype=np.int64)
    _truncate_npy(partial, state["rows"])
    with atomic_path(out / f"{split}.y.npy") as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, labels[kept])
    write_json(out / f"{split}.ids.json", [ids[i] for i in kept])
    summary = {"count": int(state["rows"]), "skipped": state["skipped"], "warned": state["warned"]}
    if state.get("sums"):
        summary["sums"] = state["sums"]
    write_json(out / f".{split}.done.json", {**summary, "signature": state["signature"]})
    os.replace(partial, out / f"{split}.x.npy")
    os.unlink(out / f".{split}.progress.json")
    return summary


@dataclass
class WorkerPool:
    executor: futures.ProcessPoolExecutor
    workers: int


@contextmanager
def worker_pool(workers: int, preload: str):
    """A process pool for a whole preparation (all splits), or None for in-process work when workers <= 1.

    Workers start from a forkserver that has already imported `preload` (a module name), so each worker starts
    in milliseconds instead of re-importing it; forking the caller itself could deadlock if it runs threads
    (torch's, a progress bar's).
    """
    if workers <= 1:
        yield None
        return
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([preload])
    with futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init) as executor:
        yield WorkerPool(executor, workers)


def _in_order(calls: Iterator[tuple], pool: WorkerPool | None) -> Iterator[list]:
    """The result of each call (function, arguments), in order; with a pool, at most two calls per worker in
    flight (bounded memory)."""
    if pool is None:
        yield from (function(*arguments) for function, arguments in calls)
        return
    pending: collections.deque[futures.Future] = collections.deque()
    for function, arguments in calls:
        pending.append(pool.executor.submit(function, *arguments))
        if len(pending) >= 2 * pool.workers:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _worker_init() -> None:
    """One process per core: intra-op threads (OpenBLAS's spin-waiting ones above all) would only contend.

    With OpenBLAS's default threads, 2 audio workers on 2 cores prepared no faster than one process
    (benchmarks/README.md: preparation).
    """
    threadpoolctl.threadpool_limits(1)
    torch = sys.modules.get("torch")  # preparation itself never imports torch; a caller's preload may
    if torch is not None:
        torch.set_num_threads(1)


def _truncate_npy(path: Path, rows: int) -> None:
    """Shrink a C-ordered .npy file to its first `rows` rows in place: rewrite the header, cut the tail."""
    shape, data_start, fortran, dtype, version = _npy_layout(path)
    if shape[0] == rows:
        return
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": fortran, "shape": (rows, *shape[1:])}
    text = repr(header).encode("latin1")
    prefix = 10 if version == (1, 0) else 12
    padded = text + b" " * (data_start - prefix - len(text) - 1) + b"\n"
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
    with open(path, "r+b") as handle:
        handle.seek(prefix)
        handle.write(padded)
        handle.truncate(data_start + rows * row_bytes)
