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
from typing import Callable, Iterator, NamedTuple

import numpy as np
import threadpoolctl

from audio2image.util import DatasetError, atomic_path, progress, read_json, read_json_or_none, write_json

MANIFEST = "manifest.json"


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
            damaged = damaged_arrays(self.path, (name,))
            if damaged:
                raise DatasetError(f"the store {self.path} is damaged ({'; '.join(damaged)}); prepare it again: "
                                   f"{self.prepare_command()} (a damaged store is prepared anew)")
            self._splits[name] = Split(
                x=np.load(self.path / f"{name}.x.npy", mmap_mode="r"),
                y=np.load(self.path / f"{name}.y.npy"),
                ids=read_json(self.path / f"{name}.ids.json"),
            )
        return self._splits[name]


    def prepare_command(self) -> str:
        """The command that (re)prepares this store, as far as the manifest records it."""
        return (f"audio2image prepare {self.manifest.get('dataset', 'DATASET')} "
                f"{self.manifest.get('source_root') or 'ROOT'} {self.path}")


def is_complete(path: Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def damaged_arrays(path: Path, splits=None) -> list[str]:
    """What is wrong with a complete store's arrays, per file ('train.x.npy: 1048576 bytes short'): a missing file,
    an unreadable header, or fewer bytes than the header's shape needs (a copy or write cut short). Cheap: headers
    and file sizes only, no data read."""
    path = Path(path)
    manifest = read_json_or_none(path / MANIFEST) or {}
    problems = []
    for split in splits if splits is not None else manifest.get("splits", {}):
        for kind in ("x", "y"):
            array = path / f"{split}.{kind}.npy"
            try:
                shape, start, _, dtype, _ = _npy_layout(array)
            except (OSError, ValueError, KeyError) as error:
                problems.append(f"{array.name}: {type(error).__name__}")
                continue
            short = start + int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize - array.stat().st_size
            if short > 0:
                problems.append(f"{array.name}: {short} bytes short")
    return problems


# --- writing -----------------------------------------------------------------------------------------------------
# a chunk of items -> per item: an array or a Row (kept), or a str (the reason it was skipped)
Work = Callable[[list], list]


class Row(NamedTuple):
    """A kept item with per-item sums (arrays or numbers) that the split accumulates over its kept rows, e.g. a
    spectrogram's band sums: the worker that made the row computes them, so nothing reads the store back."""

    x: np.ndarray
    sums: dict


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
    Returns {split: {"count": kept rows, "skipped": [{"item": id, "reason": ...}], "sums": {...} where `work`
    returns `Row`s}}. With a `pool` (see
    `worker_pool`), `work` must be picklable: a module-level function or a functools.partial of one.
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
    inputs = (partials[name].split.items[start:start + chunk] for name, start in chunks)
    for (name, start), results in zip(chunks, _in_order(work, inputs, pool)):
        partials[name].add(start, results)
        bar.update(len(results))
    bar.close()
    summaries.update({name: partial.finish() for name, partial in partials.items()})
    return {name: summaries[name] for name in splits}


class _PartialSplit:
    """A split being written: `<split>.x.npy.partial` plus `.<split>.progress.json`, which counts only rows that
    reached the file, so a killed run resumes after the last recorded chunk.

    Rows are written with plain file writes, not through a memory map: mapped pages would count in the
    process's resident memory, which would then grow with the dataset (measured: +900 MB for 2,000 clips).
    """

    def __init__(self, out: Path, name: str, split: SplitItems, item_shape: tuple[int, ...], dtype, signature: str):
        self.out, self.name, self.split = out, name, split
        self.item_shape, self.dtype = tuple(item_shape), np.dtype(dtype)
        self.path = out / f"{name}.x.npy.partial"
        self.state_path = out / f".{name}.progress.json"
        state = read_json_or_none(self.state_path) if self.path.exists() else None
        if state is None or state.get("signature") != signature:  # none yet, or made from other items/settings
            state = {"done": 0, "rows": 0, "kept": [], "skipped": [], "sums": {}, "signature": signature}
            shape = (len(split.items), *item_shape)
            np.lib.format.open_memmap(self.path, mode="w+", dtype=dtype, shape=shape).flush()  # header, sparse body
            write_json(self.state_path, state)
        self.state = state
        self.sums = {k: np.asarray(v, dtype=np.float64) for k, v in state.get("sums", {}).items()}
        self.row_bytes = int(np.prod(item_shape, dtype=np.int64)) * self.dtype.itemsize
        self.data_start = _npy_layout(self.path)[1]
        self.file = open(self.path, "r+b")

    def add(self, start: int, results: list) -> None:
        state = self.state
        for offset, result in enumerate(results):
            if isinstance(result, str):
                state["skipped"].append({"item": self.split.ids[start + offset], "reason": result})
                continue
            if isinstance(result, Row):
                for key, value in result.sums.items():
                    self.sums[key] = self.sums.get(key, 0.0) + np.asarray(value, dtype=np.float64)
                result = result.x
            row = np.ascontiguousarray(result, dtype=self.dtype)
            if row.shape != self.item_shape:
                raise ValueError(f"{self.split.ids[start + offset]}: got shape {row.shape}, "
                                 f"the store holds {self.item_shape}")
            self.file.seek(self.data_start + state["rows"] * self.row_bytes)
            self.file.write(row.data)
            state["rows"] += 1
            state["kept"].append(start + offset)
        self.file.flush()  # rows reach the file before the progress that counts them
        state["done"] = start + len(results)
        state["sums"] = {k: v.tolist() for k, v in self.sums.items()}
        # Atomic but not fsynced: a killed preparation resumes from it (the OS keeps both files' writes); a power
        # cut could lose rows as well as progress, so an fsync here alone would not make that safe, and it cost
        # ~60 ms per chunk of 16 clips on this machine's disk (a third of the preparation time).
        write_json(self.state_path, state, sync=False)

    def finish(self) -> dict:
        self.file.close()
        return _finish_split(self.out, self.name, self.path, self.state, self.split.ids, self.split.labels)


def _finish_split(out: Path, split: str, partial: Path, state: dict, ids: list[str], labels: np.ndarray) -> dict:
    kept = np.asarray(state["kept"], dtype=np.int64)
    _truncate_npy(partial, state["rows"])
    with atomic_path(out / f"{split}.y.npy") as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, labels[kept])
    write_json(out / f"{split}.ids.json", [ids[i] for i in kept])
    summary = {"count": int(state["rows"]), "skipped": state["skipped"]}
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


def _in_order(work: Work, inputs: Iterator[list], pool: WorkerPool | None) -> Iterator[list]:
    """`work` of each input, in order; with a pool, at most two inputs per worker in flight (bounded memory)."""
    if pool is None:
        yield from map(work, inputs)
        return
    pending: collections.deque[futures.Future] = collections.deque()
    for item in inputs:
        pending.append(pool.executor.submit(work, item))
        if len(pending) >= 2 * pool.workers:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _worker_init() -> None:
    """One process per core: intra-op threads (OpenBLAS's spin-waiting ones above all) would only contend.

    Measured on 2 cores, 2 audio workers with OpenBLAS's default threads prepared no faster than one process.
    """
    threadpoolctl.threadpool_limits(1)
    torch = sys.modules.get("torch")  # preparation itself never imports torch; a caller's preload may
    if torch is not None:
        torch.set_num_threads(1)


def _npy_layout(path: Path) -> tuple[tuple, int, bool, np.dtype, tuple[int, int]]:
    """(shape, offset of the data, fortran order, dtype, format version) from a .npy file's header."""
    with open(path, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        shape, fortran, dtype = read_header[version](handle)
        return shape, handle.tell(), fortran, dtype, version


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


def check_splits(out: Path, manifest: dict, examples: int = 3) -> None:
    """Refuse to complete a store with an empty split (training needs all three), naming why items were skipped.

    The refused splits are discarded, so that the same command run again, after the files or settings were
    mended, prepares them anew rather than finding them finished.
    """
    for name, split in manifest["splits"].items():
        if split["count"] == 0:
            skipped = [item for item in manifest["skipped"] if item["split"] == name]
            why = "; ".join(f"{item['item']}: {item['reason']}" for item in skipped[:examples])
            for other in manifest["splits"]:
                for leftover in (f"{other}.x.npy", f"{other}.y.npy", f"{other}.ids.json", f".{other}.done.json"):
                    (out / leftover).unlink(missing_ok=True)
            raise DatasetError(f"prepare {out}: split '{name}' has no usable item"
                               + (f": all {len(skipped)} were skipped (e.g. {why})" if skipped else "")
                               + "; mend the files or the settings and run the same command again")


def complete_manifest(out: Path, signatures: dict[str, str]) -> dict | None:
    """The manifest of the complete store in `out` if it was prepared from these splits (`split_signature`s);
    None when there is no complete store; DatasetError when `out` holds one made from other data or settings."""
    if not is_complete(out):
        return None
    damaged = damaged_arrays(out)
    if damaged:  # prepared anew; the damaged files are kept aside, named
        for name in (MANIFEST, *(f"{split}.{kind}.npy" for split in read_json(out / MANIFEST).get("splits", {})
                                 for kind in ("x", "y"))):
            if (out / name).exists():
                os.replace(out / name, out / f"{name}.damaged")
        print(f"warning: the store {out} is damaged ({'; '.join(damaged)}); its files are set aside as *.damaged "
              "and it is prepared anew", file=sys.stderr)
        return None
    manifest = Store(out).manifest
    recorded = manifest.get("signatures")
    if recorded is None or recorded == signatures:  # None: prepared before signatures were recorded
        return manifest
    raise DatasetError(f"{out} already holds a store prepared from other data or settings; give another output "
                       "folder, or delete this one to prepare it anew")


def write_manifest(out: Path, manifest: dict) -> None:
    write_json(out / MANIFEST, manifest)
