"""Caltech-256: the scan ignores the real tree's stray entries, splits and nested fractions are sound,
inspection finds images that do not decode."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from audio2image.datasets.caltech256 import (
    CATEGORY,
    format_caltech256_inspection,
    inspect_caltech256,
    scan_caltech256,
    split_images,
)
from audio2image.datasets.splits import nested_fraction

TOP = "256_ObjectCategories"


def jpeg_bytes(seed: int, size=(24, 20), mode="RGB") -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def make_tree(root, per_class: dict[str, int]):
    """A fake 256_ObjectCategories with `per_class` images per folder and the real tree's strays."""
    top = root / TOP
    for k, (name, count) in enumerate(per_class.items()):
        (top / name).mkdir(parents=True)
        number = name.split(".")[0]
        for i in range(count):
            (top / name / f"{number}_{i + 1:04d}.jpg").write_bytes(jpeg_bytes(100 * k + i))
    return top


@pytest.fixture
def tree(tmp_path):
    top = make_tree(tmp_path, {"002.american-flag": 3, "001.ak47": 4, "056.dog": 2, "198.spider": 1,
                               "257.clutter": 2, "010.beer-mug": 0})
    (top / "056.dog/greg").mkdir()
    (top / "056.dog/greg/056_0001.jpg").write_bytes(jpeg_bytes(9))  # inside the stray: not an image of ours
    (top / "198.spider/RENAME2").write_text("rename me")
    (top / "198.spider/198_0002.JPG").write_bytes(jpeg_bytes(7))  # upper-case extension still counts
    (top / "extras").mkdir()
    (top / "readme.txt").write_text("hello")
    return tmp_path


def test_scan_ignores_strays_and_reports_them(tree):
    scan = scan_caltech256(tree)
    assert scan.classes == ["001.ak47", "002.american-flag", "056.dog", "198.spider", "257.clutter"]
    assert scan.empty_classes == ["010.beer-mug"]
    assert scan.strays == [f"{TOP}/056.dog/greg/", f"{TOP}/198.spider/RENAME2", f"{TOP}/extras/", f"{TOP}/readme.txt"]
    assert len(scan.paths) == 4 + 3 + 2 + 2 + 2
    assert scan.paths[0] == f"{TOP}/001.ak47/001_0001.jpg"
    assert f"{TOP}/198.spider/198_0002.JPG" in scan.paths
    assert scan.labels.dtype == np.int64
    assert scan.labels.tolist() == [0] * 4 + [1] * 3 + [2] * 2 + [3] * 2 + [4] * 2
    for path, label in zip(scan.paths, scan.labels):
        assert path.split("/")[1] == scan.classes[label]
        assert (tree / path).is_file()
    assert all(CATEGORY.match(name) for name in scan.classes)


def test_scan_can_leave_out_clutter(tree):
    scan = scan_caltech256(tree, include_clutter=False)
    assert scan.classes[-1] == "198.spider" and len(scan.classes) == 4
    assert scan.excluded == ["257.clutter"]
    assert not any("clutter" in p for p in scan.paths + scan.strays)


def test_scan_is_deterministic(tree):
    a, b = scan_caltech256(tree), scan_caltech256(tree)
    assert a.paths == b.paths and a.classes == b.classes and np.array_equal(a.labels, b.labels)


def test_missing_tree_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="audio2image download caltech256") as info:
        scan_caltech256(tmp_path)
    assert str(tmp_path / TOP) in str(info.value) and "\n" not in str(info.value)


# ----------------------------------------------------------------------------- splits


def caltech_like_labels(seed=0) -> np.ndarray:
    """Shuffled labels of 40 classes with 3 to 120 images each (Caltech has 80-827)."""
    rng = np.random.default_rng(seed)
    sizes = np.concatenate([[3, 4, 5, 7], rng.integers(8, 121, 36)])
    labels = np.repeat(np.arange(len(sizes)), sizes)
    return labels[rng.permutation(len(labels))]


def assert_partition(splits: dict, n: int):
    assert set(splits) == {"train", "valid", "test"}
    joined = np.concatenate(list(splits.values()))
    assert len(joined) == n and np.array_equal(np.sort(joined), np.arange(n))
    assert all(s.dtype == np.int64 for s in splits.values())


def test_stratified_split_is_a_stratified_partition():
    labels = caltech_like_labels()
    splits = split_images(labels, "stratified", seed=0)
    assert_partition(splits, len(labels))
    for positions in splits.values():
        assert set(labels[positions]) == set(labels)  # every class in every split, even 3-image ones
    for c in np.unique(labels):
        n = np.sum(labels == c)
        n_train = np.sum(labels[splits["train"]] == c)
        assert abs(n_train - 0.6 * n) <= 1
    # with real-sized classes the proportions are 60/20/20 to within rounding
    sizes = {k: len(v) / len(labels) for k, v in splits.items()}
    assert abs(sizes["train"] - 0.6) < 0.01 and abs(sizes["valid"] - 0.2) < 0.01


def test_splits_depend_only_on_labels_protocol_seed_and_ratios():
    labels = caltech_like_labels()
    for protocol in ("stratified", "original"):
        a = split_images(labels, protocol, seed=3)
        b = split_images(labels.copy(), protocol, seed=3)
        c = split_images(labels, protocol, seed=4)
        assert all(np.array_equal(a[k], b[k]) for k in a)
        assert not np.array_equal(a["train"], c["train"])
        d = split_images(labels, protocol, seed=3, ratios=(0.5, 0.25, 0.25))
        assert len(d["train"]) < len(a["train"])


def test_original_protocol_has_random_split_proportions():
    labels = np.repeat(np.arange(257), 30_607 // 257 + 1)[:30_607]
    splits = split_images(labels, "original", seed=42)
    assert_partition(splits, len(labels))
    # torch.utils.data.random_split(..., [0.6, 0.2, 0.2]) gives these lengths for 30,607 items
    assert {k: len(v) for k, v in splits.items()} == {"train": 18_365, "valid": 6_121, "test": 6_121}


def test_unknown_protocol_and_bad_ratios_are_refused():
    with pytest.raises(ValueError, match="stratified, original"):
        split_images(np.zeros(10, int), "random")
    with pytest.raises(ValueError, match="summing to 1"):
        split_images(np.zeros(10, int), ratios=(0.6, 0.2, 0.1))


# ----------------------------------------------------------------------------- nested fractions

FRACTIONS = (0.05, 0.15, 0.3, 0.5, 0.7, 1.0)


@pytest.mark.parametrize("seed", [0, 1, 42])
def test_nested_fractions_are_nested_stratified_and_complete(seed):
    train_labels = caltech_like_labels(seed)
    subsets = [nested_fraction(train_labels, f, seed) for f in FRACTIONS]
    for smaller, larger in zip(subsets, subsets[1:]):
        assert set(smaller) <= set(larger) and len(smaller) < len(larger)
    for fraction, subset in zip(FRACTIONS, subsets):
        assert np.array_equal(subset, np.unique(subset))  # sorted, no repeats
        assert set(train_labels[subset]) == set(train_labels)  # >= 1 image per class
        for c in np.unique(train_labels):
            n = np.sum(train_labels == c)
            assert np.sum(train_labels[subset] == c) == max(1, int(np.floor(fraction * n + 0.5)))
    assert np.array_equal(subsets[-1], np.arange(len(train_labels)))


def test_nested_fraction_depends_only_on_seed():
    labels = caltech_like_labels()
    assert np.array_equal(nested_fraction(labels, 0.3, 5), nested_fraction(labels.copy(), 0.3, 5))
    assert not np.array_equal(nested_fraction(labels, 0.3, 5), nested_fraction(labels, 0.3, 6))
    # a class's choice does not depend on the other classes present
    only_class_7 = labels[labels == 7]
    chosen = np.flatnonzero(labels == 7)[nested_fraction(only_class_7, 0.3, 5)]
    full = nested_fraction(labels, 0.3, 5)
    assert np.array_equal(chosen, full[labels[full] == 7])
    with pytest.raises(ValueError):
        nested_fraction(labels, 0.0, 0)


# ----------------------------------------------------------------------------- inspection


@pytest.mark.parametrize("workers", [1, 2])
def test_inspect_flags_images_that_do_not_decode(tree, workers):
    spider = tree / TOP / "198.spider"
    good = jpeg_bytes(1, size=(200, 150))
    (spider / "198_0003.jpg").write_bytes(good[: len(good) // 2])  # truncated
    (spider / "198_0004.jpg").write_bytes(b"")  # zero bytes
    (spider / "198_0005.jpg").write_text("this is not a picture")
    (spider / "198_0006.jpg").write_bytes(jpeg_bytes(2, mode="L"))  # grayscale: fine, but counted
    report = inspect_caltech256(tree, workers=workers)
    bad = {item["path"].rsplit("/", 1)[1]: item["reason"] for item in report["undecodable"]}
    assert set(bad) == {"198_0003.jpg", "198_0004.jpg", "198_0005.jpg"}
    assert "truncated" in bad["198_0003.jpg"]
    assert bad["198_0004.jpg"] == "zero-byte file"
    assert "UnidentifiedImageError" in bad["198_0005.jpg"]
    assert report["modes"] == {"L": 1, "RGB": report["images"] - 4}
    assert report["per_class"]["198.spider"] == 6
    assert report["images_per_class"] == {"min": 2, "median": 3, "max": 6}
    assert report["empty_classes"] == ["010.beer-mug"] and len(report["strays"]) == 4
    json.dumps(report)
    text = format_caltech256_inspection(report)
    assert "198_0003.jpg" in text and "056.dog/greg/" in text and "010.beer-mug" in text


def test_inspect_without_decoding(tree):
    (tree / TOP / "001.ak47/001_0009.jpg").write_bytes(b"")
    report = inspect_caltech256(tree, include_clutter=False, decode=False)
    assert "undecodable" not in report and report["classes"] == 4 and report["images"] == 4 + 3 + 2 + 2 + 1
    assert "not decoded" in format_caltech256_inspection(report)
