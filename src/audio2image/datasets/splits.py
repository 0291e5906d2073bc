"""Splits and training fractions shared by every dataset: the split names, seeded stratified and unstratified
splits, and nested training fractions.

Each function depends only on its arguments (labels, seed, ratios), never on the order datasets were scanned
in or on what else exists, so a store's split is reproducible from its manifest.

    >>> parts = stratified_split(labels, seed=0)          # {"train": positions, "valid": ..., "test": ...}
    >>> rows = nested_fraction(parts_labels, 0.3, seed=1)  # inside the 0.5 fraction's rows of the same seed
"""
from __future__ import annotations

import math

import numpy as np

SPLITS = ("train", "valid", "test")
RATIOS = (0.6, 0.2, 0.2)  # train / valid / test, when a dataset brings no split of its own
# Distinct RNG streams, so that the split and the fractions never reuse the same random numbers.
_STREAM_STRATIFIED, _STREAM_RANDOM, _STREAM_FRACTION = 1, 2, 3


def check_ratios(ratios) -> tuple[float, float, float]:
    ratios = tuple(float(r) for r in ratios)
    if len(ratios) != 3 or min(ratios) < 0 or not math.isclose(sum(ratios), 1.0, abs_tol=1e-6):
        raise ValueError(f"ratios must be three non-negative numbers summing to 1, got {ratios}")
    return ratios


def class_counts(n: int, ratios: tuple[float, float, float]) -> list[int]:
    """Split n into three counts by largest remainder; with n >= 3 every non-zero split gets at least one."""
    exact = [n * r for r in ratios]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(3), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    if n >= 3:
        # Small classes: move one item at a time from the largest split into any empty one
        # (only into splits that are meant to get items at all).
        for i in range(3):
            if counts[i] == 0 and ratios[i] > 0:
                counts[max(range(3), key=lambda j: counts[j])] -= 1
                counts[i] = 1
    return counts


def stratified_split(labels: np.ndarray, seed: int, ratios=RATIOS) -> dict[str, np.ndarray]:
    """Per class, a seeded shuffle cut by `ratios` (largest remainder): sorted positions per split.

    Each class is seeded on its own, so one class's split does not depend on what other classes exist; every
    class with at least 3 items has one in every split whose ratio is non-zero.
    """
    labels, ratios = np.asarray(labels), check_ratios(ratios)
    parts = {name: [] for name in SPLITS}
    for label in np.unique(labels):
        positions = np.flatnonzero(labels == label)
        rng = np.random.default_rng([seed, _STREAM_STRATIFIED, int(label)])
        shuffled = positions[rng.permutation(len(positions))]
        edges = np.cumsum(class_counts(len(positions), ratios))
        for name, chunk in zip(SPLITS, np.split(shuffled, edges[:2])):
            parts[name].append(chunk)
    return {name: np.sort(np.concatenate(chunks)).astype(np.int64) if chunks else np.zeros(0, np.int64)
            for name, chunks in parts.items()}


def random_split(n: int, seed: int, ratios=RATIOS) -> dict[str, np.ndarray]:
    """Unstratified seeded split of n items with torch `random_split`'s lengths for fractional sizes.

    torch floors each fraction's length and hands the remainder out one by one from the first split (so 30,607
    items give 18,365 / 6,121 / 6,121). The permutation comes from numpy.
    """
    ratios = check_ratios(ratios)
    lengths = [math.floor(n * r) for r in ratios]
    for i in range(n - sum(lengths)):
        lengths[i % 3] += 1
    permutation = np.random.default_rng([seed, _STREAM_RANDOM]).permutation(n)
    edges = np.cumsum(lengths)[:2]
    return {name: np.sort(chunk).astype(np.int64) for name, chunk in zip(SPLITS, np.split(permutation, edges))}


# the ratios by which train is cut when a dataset brings some of its splits: those it brings get none
CUT_RATIOS = {("train",): RATIOS, ("train", "test"): (0.8, 0.2, 0.0), ("train", "valid"): (0.8, 0.0, 0.2)}


def complete_splits(given: dict[str, np.ndarray], seed: int, strata: np.ndarray | None = None
                    ) -> dict[str, np.ndarray]:
    """Sorted positions per split from those a dataset brings (`given`: train and any of valid and test): the
    splits it lacks are cut from train, stratified by `strata` (each item's class; None: unstratified, as for
    multi-label data) and seeded; train alone is cut 60/20/20, train with one other split 80/20."""
    brought = tuple(name for name in SPLITS if name in given)
    if brought == SPLITS:
        return {name: np.sort(given[name]).astype(np.int64) for name in SPLITS}
    train = np.sort(given["train"]).astype(np.int64)
    ratios = CUT_RATIOS[brought]
    cut = stratified_split(strata[train], seed, ratios) if strata is not None else random_split(len(train), seed,
                                                                                                 ratios)
    parts = {name: train[cut[name]] for name in SPLITS}
    parts.update({name: np.sort(given[name]).astype(np.int64) for name in brought if name != "train"})
    return parts


def nested_fraction(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted positions of a stratified `fraction` of a training split whose class labels are `labels`.

    Each class is ordered by a permutation that depends only on (seed, class, class size) and keeps its first
    max(1, round(fraction * n)) items, so for one seed a smaller fraction's subset lies inside every larger
    one's: comparing fractions compares more data, not other data.
    """
    _check_fraction(fraction)
    labels = np.asarray(labels)
    kept = []
    for label in np.unique(labels):
        positions = np.flatnonzero(labels == label)
        rng = np.random.default_rng([seed, _STREAM_FRACTION, int(label)])
        # floor(x + 0.5), not Python's round-half-even, so the count never shrinks as fraction grows.
        keep = min(len(positions), max(1, math.floor(fraction * len(positions) + 0.5)))
        kept.append(positions[rng.permutation(len(positions))[:keep]])
    return np.sort(np.concatenate(kept)).astype(np.int64) if kept else np.zeros(0, np.int64)


def nested_random_fraction(n: int, fraction: float, seed: int) -> np.ndarray:
    """Sorted positions of a `fraction` of n items (at least one) for multi-label data, where classes cannot
    be stratified: the first rows of one seeded permutation, so smaller fractions nest in larger ones."""
    _check_fraction(fraction)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[:max(1, round(fraction * n))])


def _check_fraction(fraction: float) -> None:
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
