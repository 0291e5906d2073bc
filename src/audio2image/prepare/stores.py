"""Where an experiment's datasets and stores live, and making them when they are not there yet.

Everything here works on a *side* of the experiment ("source", "control" or "target") and asks the dataset registry what
that side's dataset is: its root key, its synthetic version, the config keys that shape its store and its
`prepare` function. A store's folder name carries a hash of the dataset, its root and those keys, so changing a
setting prepares a new store instead of silently reusing a stale one.
"""
from __future__ import annotations

import os
from pathlib import Path

from audio2image.config import READING_KEYS, Config, config_hash, key_spec
from audio2image.prepare.store import STORE_VERSION, Store, damaged_arrays, is_complete, store_version
from audio2image.util import file_lock, log, read_json_or_none, write_json


def dataset_root(config: Config, side: str) -> Path:
    """The side's dataset folder: `<side>_root`, or where its synthetic version goes when synthetic=true."""
    configured = config.root_of(side)
    if configured:
        return Path(configured)
    dataset = config.dataset(side)
    wanted = f"give the {dataset.name} folder ({side}_root=PATH, holding {dataset.layout})"
    if not config.synthetic:
        raise FileNotFoundError(f"config key '{side}_root' is empty: {wanted}, or use synthetic data (synthetic=true)")
    if dataset.synth is None:
        raise FileNotFoundError(f"config key '{side}_root' is empty and {dataset.name} has no synthetic version: "
                                f"{wanted}")
    values = {option.key: getattr(config, option.key) for option in dataset.synth_options}
    params = {option.param for option in dataset.synth_options}  # the rest: the disjoint classes, the image sides
    values.update({key: value for key, value in synth_values(config, side).items() if key not in params})
    return Path(config.data_dir) / "synthetic" / f"{dataset.name}-{config_hash(values)}"


def synth_values(config: Config, side: str) -> dict:
    """The arguments of the side's synthetic dataset, by parameter name. The control's classes come after the
    target's (synth_disjoint), so a synthetic control of the target's kind never shares a class with it."""
    dataset = config.dataset(side)
    values = {option.param: getattr(config, option.key) for option in dataset.synth_options}
    if side == "control" and dataset.synth_disjoint:
        values[dataset.synth_disjoint] = config.synth_classes
    if dataset.synth_store_side:
        store_side = getattr(config, dataset.synth_store_side)
        values.update(min_side=store_side, max_side=max(store_side, min(SYNTH_LARGEST_SIDE, round(2.5 * store_side))))
    return values


SYNTH_LARGEST_SIDE = 500  # as Caltech-256's images: the synthetic images never need to be larger


def check_roots(config: Config, sides, key: str = "") -> None:
    """Fail before any work starts when a side's folder is unset (and not synthesised) or does not exist; `key`:
    what names the folder in the config, when not `<side>_root` (an entry of `targets`)."""
    for side in sides:
        root = dataset_root(config, side)
        if config.root_of(side) and not root.exists():
            raise FileNotFoundError(f"{config.dataset(side).name} data folder {root} does not exist "
                                    f"(config key {key or repr(side + '_root')})")


def store_path(config: Config, side: str) -> Path:
    """The side's store: named by its dataset, the keys that shape it and its data's folder, but not by where
    data_dir is, so that moving the cache changes no store's name and no run's identity (sweep/grid.py)."""
    return _store_path(config, side, _root_name(config, side))


def _store_path(config: Config, side: str, root: str) -> Path:
    dataset = config.dataset(side)
    values = {key: getattr(config, key) for key in dataset.store_keys
              if key not in READING_KEYS or getattr(config, key) != key_spec(key)[1]}
    values["root"] = root
    return Path(config.data_dir) / "stores" / f"{dataset.name}-{config_hash(values)}"


def _root_name(config: Config, side: str) -> str:
    """The side's data folder as its store's name hashes it: inside data_dir (a synthesised dataset), relative to
    it; elsewhere, its absolute path (two folders of one kind of dataset are two datasets)."""
    root, cache = dataset_root(config, side).resolve(), Path(config.data_dir).resolve()
    return f"<data_dir>/{root.relative_to(cache).as_posix()}" if root.is_relative_to(cache) else str(root)


def former_store_path(config: Config, side: str) -> Path:
    """Where earlier versions put the side's store: named by its data folder's absolute path, data_dir's included
    (so moving the cache changed every name); the same as `store_path` for a folder outside data_dir."""
    return _store_path(config, side, str(dataset_root(config, side).resolve()))


FORMER_NAMES = "former_names.json"  # in a store renamed by `adopt_former_store`: the names it had


def store_names(store: Path) -> list[str]:
    """A store's name and the names it had before (`adopt_former_store`), present name first: runs made from it
    under a former name keep their identity (sweep/grid.py)."""
    former = read_json_or_none(Path(store) / FORMER_NAMES) or []
    return [Path(store).name, *[str(name) for name in former if name != Path(store).name]]


def adopt_former_store(config: Config, side: str) -> None:
    """Give a complete store at its former place (`former_store_path`) its present name, and record the former in
    it: the store is not prepared again, and finished runs named after it are found (no run is trained again)."""
    out, former = store_path(config, side), former_store_path(config, side)
    if former == out or out.exists() or not is_complete(former):
        return
    write_json(former / FORMER_NAMES, store_names(former))  # first: a crash after it leaves a store that works
    os.replace(former, out)
    log(f"store {former} is now {out.name} (store names no longer depend on where data_dir is)")


def store_ready(config: Config, side: str) -> bool:
    """Whether the side's store is complete, whole and made by the current rules (nothing to prepare: an older
    store is brought up to date, or refused, by its preparation)."""
    out = store_path(config, side)
    return is_complete(out) and not damaged_arrays(out) and store_version(out) == STORE_VERSION


def ensure_dataset(config: Config, side: str) -> Path:
    """The side's raw dataset root; synthesised first when the config asks for synthetic data."""
    root = dataset_root(config, side)
    dataset = config.dataset(side)
    if config.synthetic and not config.root_of(side):
        dataset.synth(root, workers=config.workers, progress=config.progress, **synth_values(config, side))
    if not root.exists():
        raise FileNotFoundError(f"{dataset.name} data folder {root} does not exist (config key '{side}_root')")
    return root


def ensure_store(config: Config, side: str, wait: bool = True) -> Store:
    """The prepared store of the side's dataset under this config, prepared (or finished) now if needed; with
    wait=False, util.Busy when another process is preparing it."""
    out = store_path(config, side)
    # one preparer per store among processes sharing data_dir; the others wait, then open the finished store
    with file_lock(out.parent / f".{out.name}.lock", wait=wait):
        adopt_former_store(config, side)
        if not store_ready(config, side):  # a damaged store is set aside and prepared anew, an older one updated
            dataset = config.dataset(side)
            dataset.prepare(ensure_dataset(config, side), out, workers=config.workers, progress=config.progress,
                            **{option.param: getattr(config, option.key) for option in dataset.store_options})
    return Store(out)


def planned_store(config: Config, side: str) -> dict:
    """What the side's store holds, or will hold once prepared, without making anything: its folder, whether it is
    ready, items per split and labels (a ready store's manifest; else the registry's `count` of the folder, or its
    `synth_count` before synthesis), one item's shape and dtype (the registry's `item`) and its size in bytes."""
    import numpy as np

    dataset = config.dataset(side)
    options = {option.param: getattr(config, option.key) for option in dataset.store_options}
    item = dataset.item(**options)
    path = store_path(config, side)
    ready = store_ready(config, side)
    task = dataset.task  # None: decided by the data (audiofolder), known once prepared
    if ready:
        manifest = Store(path).manifest
        counted = {"splits": {name: split["count"] for name, split in manifest["splits"].items()},
                   "labels": len(manifest["labels"])}
        task = manifest["task"]
    elif config.synthetic and not config.root_of(side):
        counted = dataset.synth_count(**synth_values(config, side), **options)
    else:
        counted = dataset.count(dataset_root(config, side), **options)
    per_item = int(np.prod(item["shape"])) * np.dtype(item["dtype"]).itemsize
    items = sum(counted["splits"].values())
    return {"side": side, "dataset": dataset.name, "modality": dataset.modality, "task": task, "store": str(path),
            "ready": ready, **counted, "item": item, "bytes_per_item": per_item, "bytes": per_item * items}
