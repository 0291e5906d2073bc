"""Caltech-256: scan the folder tree, split it, take nested training fractions, inspect a copy.

The archive unpacks to ``256_ObjectCategories/NNN.name/NNN_XXXX.jpg`` with 257 category folders
(``001.ak47`` ... ``256.toad`` plus ``257.clutter``). The real tree has stray entries that must
not become images or classes: a sub-folder ``056.dog/greg/`` and a non-image ``198.spider/RENAME2``.
The scan therefore takes only ``NNN.name`` folders and only ``.jpg`` files directly inside them,
and reports everything else.

There is no official split. ``stratified`` (ours) splits every class 60/20/20; ``seed`` reproduces
the proportions of the seed experiment's unstratified ``random_split``.
"""
from __future__ import annotations

import math
import os
import re
import statistics
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SPLIT_PROTOCOLS = ("stratified", "seed")
CATEGORY = re.compile(r"^(\d{3})\.(.+)$")
CATEGORIES_DIR = "256_ObjectCategories"
CLUTTER = "clutter"

_GET_DATA = "get the data with `audio2image download caltech256 DIR` or `audio2image synth caltech256 DIR`"
_SPLITS = ("train", "valid", "test")
# Distinct RNG streams, so that the split and the fractions never reuse the same random numbers.
_STREAM_STRATIFIED, _STREAM_SEED, _STREAM_FRACTION = 1, 2, 3


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


def _scan_category(folder: Path, rel: str) -> tuple[list[str], list[str]]:
    """(image file names, stray relative paths) directly inside one category folder."""
    images, strays = [], []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.is_file() and entry.name.lower().endswith(".jpg"):
            images.append(entry.name)
        else:
            strays.append(f"{rel}/{entry.name}" + ("/" if entry.is_dir() else ""))
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
        match = CATEGORY.match(entry.name) if entry.is_dir() else None
        if match is None:
            strays.append(f"{CATEGORIES_DIR}/{entry.name}" + ("/" if entry.is_dir() else ""))
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


def _check_ratios(ratios) -> tuple[float, float, float]:
    ratios = tuple(float(r) for r in ratios)
    if len(ratios) != 3 or min(ratios) < 0 or not math.isclose(sum(ratios), 1.0, abs_tol=1e-6):
        raise ValueError(f"ratios must be three non-negative numbers summing to 1, got {ratios}")
    return ratios


def _class_counts(n: int, ratios: tuple[float, float, float]) -> list[int]:
    """Split n into three counts by largest remainder; with n >= 3 every non-zero split gets at least one."""
    exact = [n * r for r in ratios]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(3), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    if n >= 3:
        # Small classes: move one image at a time from the largest split into any empty one
        # (only into splits that are meant to get images at all).
        for i in range(3):
            if counts[i] == 0 and ratios[i] > 0:
                counts[max(range(3), key=lambda j: counts[j])] -= 1
                counts[i] = 1
    return counts


def _stratified(labels: np.ndarray, seed: int, ratios) -> dict[str, np.ndarray]:
    parts = {name: [] for name in _SPLITS}
    for label in np.unique(labels):
        positions = np.flatnonzero(labels == label)
        # Seeded per class: one class's split does not depend on what other classes exist.
        rng = np.random.default_rng([seed, _STREAM_STRATIFIED, int(label)])
        shuffled = positions[rng.permutation(len(positions))]
        edges = np.cumsum(_class_counts(len(positions), ratios))
        for name, chunk in zip(_SPLITS, np.split(shuffled, edges[:2])):
            parts[name].append(chunk)
    return {name: np.sort(np.concatenate(chunks)).astype(np.int64) if chunks else np.zeros(0, np.int64)
            for name, chunks in parts.items()}


def _seed_protocol(labels: np.ndarray, seed: int, ratios) -> dict[str, np.ndarray]:
    """Unstratified random split with torch `random_split`'s lengths for fractional sizes.

    torch floors each fraction's length and hands the remainder out one by one from the first
    split (so 30,607 images give 18,365 / 6,121 / 6,121). Only the proportions are mimicked:
    the permutation comes from numpy, so it is not the seed experiment's exact split.
    """
    n = len(labels)
    lengths = [math.floor(n * r) for r in ratios]
    for i in range(n - sum(lengths)):
        lengths[i % 3] += 1
    permutation = np.random.default_rng([seed, _STREAM_SEED]).permutation(n)
    edges = np.cumsum(lengths)[:2]
    return {name: np.sort(chunk).astype(np.int64) for name, chunk in zip(_SPLITS, np.split(permutation, edges))}


def split_images(labels: np.ndarray, protocol: str = "stratified", seed: int = 0,
                 ratios=(0.6, 0.2, 0.2)) -> dict[str, np.ndarray]:
    """Sorted positions into `labels` for "train", "valid", "test": disjoint and covering all.

    Depends only on (labels, protocol, seed, ratios). ``stratified``: per class, a seeded
    shuffle split by `ratios` (largest remainder), every class with >= 3 images in every split.
    ``seed``: see `_seed_protocol`.
    """
    if protocol not in SPLIT_PROTOCOLS:
        raise ValueError(f"unknown Caltech-256 split protocol {protocol!r}; choose one of {', '.join(SPLIT_PROTOCOLS)}")
    labels = np.asarray(labels)
    ratios = _check_ratios(ratios)
    if protocol == "stratified":
        return _stratified(labels, seed, ratios)
    return _seed_protocol(labels, seed, ratios)


def nested_fraction(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted positions of a stratified `fraction` of a training split whose labels are `labels`.

    Each class is ordered by a permutation that depends only on (seed, class, class size) and
    keeps its first max(1, round(fraction * n)) images, so for one seed a smaller fraction's
    subset lies inside every larger one's: comparing fractions compares more data, not other data.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    labels = np.asarray(labels)
    kept = []
    for label in np.unique(labels):
        positions = np.flatnonzero(labels == label)
        rng = np.random.default_rng([seed, _STREAM_FRACTION, int(label)])
        # floor(x + 0.5), not Python's round-half-even, so the count never shrinks as fraction grows.
        keep = min(len(positions), max(1, math.floor(fraction * len(positions) + 0.5)))
        kept.append(positions[rng.permutation(len(positions))[:keep]])
    return np.sort(np.concatenate(kept)).astype(np.int64) if kept else np.zeros(0, np.int64)


# ----------------------------------------------------------------------------- inspection


def check_image(path: str) -> tuple[str | None, str | None]:
    """(PIL mode, None) if the file decodes fully, else (None, reason)."""
    from PIL import Image

    try:
        if os.path.getsize(path) == 0:
            return None, "zero-byte file"
        with Image.open(path) as image:
            image.load()  # open() only reads the header; load() decodes, which catches truncation
            return image.mode, None
    except Exception as error:  # any decoder failure is a finding, not a crash
        return None, f"{type(error).__name__}: {error}"


def _check_all(paths: list[str], workers: int) -> list[tuple[str | None, str | None]]:
    if workers <= 1:
        return [check_image(path) for path in paths]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(check_image, paths, chunksize=64))


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
        "images_per_class": {
            "min": min(per_class, default=0),
            "median": statistics.median(per_class) if per_class else 0,
            "max": max(per_class, default=0),
        },
        "strays": scan.strays,
        "empty_classes": scan.empty_classes,
        "excluded": scan.excluded,
        "decoded": decode,
    }
    if decode:
        results = _check_all([str(scan.root / p) for p in scan.paths], workers)
        modes: dict[str, int] = {}
        for mode, _ in results:
            if mode is not None:
                modes[mode] = modes.get(mode, 0) + 1
        report["modes"] = dict(sorted(modes.items()))
        report["undecodable"] = [{"path": p, "reason": reason}
                                 for p, (_, reason) in zip(scan.paths, results) if reason is not None]
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
    if report["decoded"]:
        modes = ", ".join(f"{mode} {count}" for mode, count in report["modes"].items()) or "none"
        lines.append(f"decoded image modes: {modes} (decode with an explicit conversion to RGB)")
        lines.append(f"images that fail to decode: {len(report['undecodable'])}")
        lines += [f"  {item['path']}: {item['reason']}" for item in report["undecodable"]]
    else:
        lines.append("images not decoded (decode=False)")
    lines.append("images per class:")
    lines += [f"  {name:<32} {count:>5}" for name, count in report["per_class"].items()]
    return "\n".join(lines)
