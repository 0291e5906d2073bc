"""The prepared store: fixed-shape arrays per split, memory-mapped, plus labels and a JSON manifest.

Layout of a store folder (the same for audio and images, so either can be a source or a target):

    manifest.json          written last; its presence means the store is complete
    <split>.x.npy          features: fp16 [clips, mels, frames] or uint8 [images, side, side, 3]
    <split>.y.npy          labels: uint8 [n, tags] (multi-label) or int64 [n] (multi-class)
    <split>.ids.json       the item names (clip paths, image paths) in row order

prepare.writer writes them (resumably, by a process pool); this module reads them and checks them.

A store records the version of the rules it was made by (`STORE_VERSION`). A complete store of an older version is
never reused as it is: its modality's writer brings its manifest up to date where the new rules give the same rows
from the same files, and refuses it, naming what would change, where they do not (see `complete_manifest`).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audio2image.util import DatasetError, read_json, read_json_or_none, write_json

MANIFEST = "manifest.json"
# The rules a store is made by. 1: before versions were recorded. 2: images of more than 8 bits per pixel are
# scaled by their own range (version 1 clipped them, mostly to white), small images and labels that never vary are
# listed, a classification store needs two classes among its kept items and a tagging store a tag that varies.
STORE_VERSION = 2


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


def _npy_layout(path: Path) -> tuple[tuple, int, bool, np.dtype, tuple[int, int]]:
    """(shape, offset of the data, fortran order, dtype, format version) from a .npy file's header."""
    with open(path, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        shape, fortran, dtype = read_header[version](handle)
        return shape, handle.tell(), fortran, dtype, version


def discard_splits(out: Path, splits) -> None:
    """Remove the finished files of `splits`, so that the same command run again, after the files or settings were
    mended, prepares them anew rather than finding them finished."""
    for name in splits:
        for leftover in (f"{name}.x.npy", f"{name}.y.npy", f"{name}.ids.json", f".{name}.done.json"):
            (out / leftover).unlink(missing_ok=True)


def check_splits(out: Path, manifest: dict, examples: int = 3) -> None:
    """Refuse to complete a store with an empty split (training needs all three), naming why items were skipped.
    The refused store's splits are discarded (`discard_splits`)."""
    for name, split in manifest["splits"].items():
        if split["count"] == 0:
            skipped = [item for item in manifest["skipped"] if item["split"] == name]
            why = "; ".join(f"{item['item']}: {item['reason']}" for item in skipped[:examples])
            discard_splits(out, manifest["splits"])
            raise DatasetError(f"prepare {out}: split '{name}' has no usable item"
                               + (f": all {len(skipped)} were skipped (e.g. {why})" if skipped else "")
                               + "; mend the files or the settings and run the same command again")


def versioned(settings: dict, version: int) -> dict:
    """A writer's settings as the split signatures of a store of `version` hold them: version 1 stores were signed
    before versions existed, without the key, and their signatures must still be recognised."""
    return dict(settings) if version == 1 else {**settings, "store_version": version}


def store_version(path: Path) -> int:
    """The version of the rules a complete store was made by (1: before versions were recorded)."""
    return (read_json_or_none(Path(path) / MANIFEST) or {}).get("store_version", 1)


def complete_manifest(out: Path, signatures_of, upgrade) -> dict | None:
    """The manifest of the complete store in `out` if it was prepared from these splits; None when there is no
    complete store; DatasetError when `out` holds one made from other data or settings.

    `signatures_of(version)`: the `split_signature`s these splits and settings have in a store of that version.
    `upgrade(manifest)`: the modality's writer's answer to a store made from the same splits by older rules: the
    manifest brought up to date (written) where the new rules give the same rows, else a DatasetError.
    """
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
    version = manifest.get("store_version", 1)
    recorded = manifest.get("signatures")
    # None: prepared before signatures were recorded; a later version than ours: prepared by a newer audio2image
    if version > STORE_VERSION or (recorded is not None and recorded != signatures_of(version)):
        raise DatasetError(f"{out} already holds a store prepared from other data or settings"
                           + (f" (by a newer audio2image: store version {version})" if version > STORE_VERSION
                              else "") + "; give another output folder, or delete this one to prepare it anew")
    return manifest if version == STORE_VERSION else upgrade(manifest)


def write_manifest(out: Path, manifest: dict) -> None:
    write_json(out / MANIFEST, manifest)
