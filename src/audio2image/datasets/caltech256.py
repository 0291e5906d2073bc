"""Caltech-256: scan the folder tree, split it, inspect a copy.

The archive unpacks to ``256_ObjectCategories/NNN.name/NNN_XXXX.jpg`` with 257 category folders
(``001.ak47`` ... ``256.toad`` plus ``257.clutter``). The real tree has stray entries that must
not become images or classes: a sub-folder ``056.dog/greg/`` and a non-image ``198.spider/RENAME2``.
The scan therefore takes only ``NNN.name`` folders and only ``.jpg`` files directly inside them,
and reports everything else.

There is no official split. ``stratified`` (ours) splits every class 60/20/20; ``original`` reproduces
the proportions of the seed experiment's unstratified ``random_split``.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audio2image.datasets.inspection import count_stats, decode_findings, decode_lines
from audio2image.datasets.splits import RATIOS, random_split, stratified_split

SPLIT_PROTOCOLS = ("stratified", "original")
FORMATS = ("JPEG",)  # Caltech-256 is JPEGs: anything else under a .jpg name is skipped, by inspect and prepare alike
CATEGORY = re.compile(r"^(\d{3})\.(.+)$")
CATEGORIES_DIR = "256_ObjectCategories"
CLUTTER = "clutter"

_GET_DATA = "get the data with `audio2image download caltech256 DIR` or `audio2image synth caltech256 DIR`"


@dataclass
class Scan:
    root: Path  # the dataset root (holding 256_ObjectCategories)
    classes: list[str]  # folder names with at least one image, e.g. "001.ak47", sorted by number
    paths: list[str]  # image paths relative to root, e.g. "256_ObjectCategories/001.ak47/001_0001.jpg"
    labels: np.ndarray  # int64 class index per path
    strays: list[str]  # ignored entries, relative to root; folders end with "/"
    empty_classes: list[str]  # category folders without a .jpg (they get no class index)
    excluded: list[str] = field(default_factory=list)  # category folders left out on purpose (clutter)


# ----------------------------------------------------------------------------- scanning


def _category_key(name: str) -> tuple[int, str]:
    return int(CATEGORY.match(name).group(1)), name


def _is_dir(entry: os.DirEntry) -> bool:
    """entry.is_dir(), False for what cannot be followed (a symlink loop): it is then listed as a stray."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def _scan_category(folder: Path, rel: str) -> tuple[list[str], list[str]]:
    """(image file names, stray relative paths) directly inside one category folder."""
    images, strays = [], []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        try:
            is_file, is_dir = entry.is_file(), entry.is_dir()
        except OSError as error:  # a symlink loop ("Too many levels of symbolic links"), a dangling link, ...
            strays.append(f"{rel}/{entry.name} ({error.strerror or type(error).__name__})")
            continue
        if is_file and entry.name.lower().endswith(".jpg"):
            images.append(entry.name)
        else:
            strays.append(f"{rel}/{entry.name}" + ("/" if is_dir else ""))
    return images, strays


def scan_caltech256(root: Path, include_clutter: bool = True) -> Scan:
    """List the images and classes under ROOT/256_ObjectCategories, sorted and deterministic.

    Classes are numbered in folder-number order over the folders that hold at least one image;
    empty category folders are reported rather than given a class that no image can teach.
    """
    root = Path(root)
    top = root / CATEGORIES_DIR
    if not top.is_dir():
        raise FileNotFoundError(f"Caltech-256 folder {top} does not exist; {_GET_DATA}.")
    categories, strays, excluded = [], [], []
    for entry in sorted(os.scandir(top), key=lambda e: e.name):
        match = CATEGORY.match(entry.name) if _is_dir(entry) else None
        if match is None:
            strays.append(f"{CATEGORIES_DIR}/{entry.name}" + ("/" if _is_dir(entry) else ""))
        elif match.group(2) == CLUTTER and not include_clutter:
            excluded.append(entry.name)
        else:
            categories.append(entry.name)
    classes, paths, labels, empty = [], [], [], []
    for name in sorted(categories, key=_category_key):
        rel = f"{CATEGORIES_DIR}/{name}"
        images, category_strays = _scan_category(top / name, rel)
        strays.extend(category_strays)
        if not images:
            empty.append(name)
            continue
        paths.extend(f"{rel}/{image}" for image in images)
        labels.extend([len(classes)] * len(images))
        classes.append(name)
    return Scan(root=root, classes=classes, paths=paths, labels=np.asarray(labels, dtype=np.int64),
                strays=sorted(strays), empty_classes=empty, excluded=excluded)


# ----------------------------------------------------------------------------- splits


def split_images(labels: np.ndarray, protocol: str = "stratified", seed: int = 0,
                 ratios=RATIOS) -> dict[str, np.ndarray]:
    """Sorted positions into `labels` for "train", "valid", "test": disjoint and covering all.

    Depends only on (labels, protocol, seed, ratios). ``stratified``: per class, a seeded shuffle split by
    `ratios` (largest remainder), every class with >= 3 images in every split. ``original``: the proportions of the
    seed experiment's unstratified ``random_split`` (not its exact permutation: that came from torch).
    """
    if protocol not in SPLIT_PROTOCOLS:
        raise ValueError(f"unknown Caltech-256 split protocol {protocol!r}; choose one of {', '.join(SPLIT_PROTOCOLS)}")
    labels = np.asarray(labels)
    if protocol == "stratified":
        return stratified_split(labels, seed, ratios)
    return random_split(len(labels), seed, ratios)


def count_caltech256(root: Path, *, split: str = "stratified", split_seed: int = 0, include_clutter: bool = True,
                     **_) -> dict:
    """What a store of the Caltech-256 tree at `root` will hold, from its file names alone (nothing decoded):
    {"splits": {split: images}, "labels": classes}. The registry's `count`."""
    scan = scan_caltech256(root, include_clutter=include_clutter)
    parts = split_images(scan.labels, split, split_seed)
    return {"splits": {name: len(positions) for name, positions in parts.items()}, "labels": len(scan.classes)}


# ----------------------------------------------------------------------------- inspection


def inspect_caltech256(root: Path, include_clutter: bool = True, decode: bool = True, workers: int = 1) -> dict:
    """Report classes, images per class, strays, empty classes and (with decode) undecodable images."""
    scan = scan_caltech256(root, include_clutter=include_clutter)
    per_class = np.bincount(scan.labels, minlength=len(scan.classes)).tolist()
    report = {
        "root": str(scan.root),
        "include_clutter": include_clutter,
        "classes": len(scan.classes),
        "images": len(scan.paths),
        "per_class": dict(zip(scan.classes, per_class)),
        "images_per_class": count_stats(per_class),
        "strays": scan.strays,
        "empty_classes": scan.empty_classes,
        "excluded": scan.excluded,
        "decoded": decode,
    }
    if decode:
        report.update(decode_findings(scan.root, scan.paths, workers, FORMATS))
    return report


def format_caltech256_inspection(report: dict) -> str:
    """Human-readable text of an `inspect_caltech256` report."""
    stats = report["images_per_class"]
    lines = [
        f"Caltech-256 at {report['root']}",
        f"{report['classes']} classes ({'with' if report['include_clutter'] else 'without'} clutter), "
        f"{report['images']} images",
        f"images per class: min {stats['min']}, median {stats['median']}, max {stats['max']}",
    ]
    if report["excluded"]:
        lines.append(f"left out: {', '.join(report['excluded'])}")
    lines.append(f"stray entries ignored: {len(report['strays'])}")
    lines += [f"  {stray}" for stray in report["strays"]]
    lines.append(f"empty category folders: {', '.join(report['empty_classes']) or 'none'}")
    lines += decode_lines(report)
    lines.append("images per class:")
    lines += [f"  {name:<32} {count:>5}" for name, count in report["per_class"].items()]
    return "\n".join(lines)
