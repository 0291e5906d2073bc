"""Where an experiment's datasets and stores live, and making them when they are not there yet.

Everything here works on a *side* of the experiment ("source", "control" or "target") and asks the dataset registry what
that side's dataset is: its root key, its synthetic version, the config keys that shape its store and its
`prepare` function. A store's folder name carries a hash of the dataset, its root and those keys, so changing a
setting prepares a new store instead of silently reusing a stale one.
"""
from __future__ import annotations

from pathlib import Path

from audio2image.config import Config, config_hash
from audio2image.prepare.store import STORE_VERSION, Store, damaged_arrays, is_complete, store_version
from audio2image.util import file_lock


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


def check_roots(config: Config, sides) -> None:
    """Fail before any work starts when a side's folder is unset (and not synthesised) or does not exist."""
    for side in sides:
        root = dataset_root(config, side)
        if config.root_of(side) and not root.exists():
            raise FileNotFoundError(f"{config.dataset(side).name} data folder {root} does not exist "
                                    f"(config key '{side}_root')")


def store_path(config: Config, side: str) -> Path:
    dataset = config.dataset(side)
    values = {key: getattr(config, key) for key in dataset.store_keys}
    values["root"] = str(dataset_root(config, side).resolve())
    return Path(config.data_dir) / "stores" / f"{dataset.name}-{config_hash(values)}"


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
