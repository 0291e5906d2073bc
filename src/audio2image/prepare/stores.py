"""Where an experiment's datasets and stores live, and making them when they are not there yet.

A store's folder name carries a hash of everything that shapes it (dataset root, feature or image settings,
split), so changing a setting prepares a new store instead of silently reusing a stale one.
"""
from __future__ import annotations

from pathlib import Path

from audio2image.config import MODALITY, Config, config_hash
from audio2image.prepare.store import Store, is_complete

STORE_KEYS = {
    "audio": ("audio_features", "audio_split", "audio_clip_seconds"),
    "image": ("image_store_size", "image_resize", "image_split", "image_split_seed", "image_include_clutter"),
}
SYNTH_KEYS = {"mtat": ("synth_clips", "synth_seconds", "synth_seed"),
              "caltech256": ("synth_classes", "synth_per_class", "synth_seed")}


def dataset_root(config: Config, dataset: str) -> Path:
    configured = config.root_of(dataset)
    if configured:
        return Path(configured)
    if not config.synthetic:
        raise FileNotFoundError(f"config key '{dataset}_root' is empty: give the {dataset} dataset folder "
                                f"({dataset}_root=PATH) or use synthetic data (synthetic=true)")
    values = {k: getattr(config, k) for k in SYNTH_KEYS[dataset]}
    return Path(config.data_dir) / "synthetic" / f"{dataset}-{config_hash(values)}"


def store_path(config: Config, dataset: str) -> Path:
    root = dataset_root(config, dataset)
    values = {k: getattr(config, k) for k in STORE_KEYS[MODALITY[dataset]]}
    values["root"] = str(root.resolve())
    return Path(config.data_dir) / "stores" / f"{dataset}-{config_hash(values)}"


def ensure_dataset(config: Config, dataset: str) -> Path:
    """The raw dataset's root; synthesised first when the config asks for synthetic data."""
    root = dataset_root(config, dataset)
    if config.synthetic and not config.root_of(dataset):
        from audio2image.datasets import synth

        if dataset == "mtat":
            synth.synth_mtat(root, config.synth_clips, config.synth_seed, config.synth_seconds,
                             workers=config.workers, progress=config.progress)
        else:
            synth.synth_caltech256(root, config.synth_classes, config.synth_per_class, config.synth_seed,
                                   workers=config.workers, progress=config.progress)
    if not root.exists():
        raise FileNotFoundError(f"{dataset} data folder {root} does not exist (config key '{dataset}_root')")
    return root


def ensure_store(config: Config, dataset: str) -> Store:
    """The prepared store for `dataset` under this config, prepared (or finished) now if needed."""
    out = store_path(config, dataset)
    if not is_complete(out):
        root = ensure_dataset(config, dataset)
        if dataset == "mtat":
            from audio2image.prepare.audio import prepare_mtat

            prepare_mtat(root, out, features=config.audio_features, split=config.audio_split,
                         clip_seconds=config.audio_clip_seconds, workers=config.workers, progress=config.progress)
        else:
            from audio2image.prepare.images import prepare_caltech256

            prepare_caltech256(root, out, size=config.image_store_size, resize=config.image_resize,
                               split=config.image_split, split_seed=config.image_split_seed,
                               include_clutter=config.image_include_clutter, workers=config.workers,
                               progress=config.progress)
    return Store(out)
