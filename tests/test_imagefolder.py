"""Image folders: the scan is torchvision ImageFolder's (classes, paths, labels), everything else is a stray,
split folders are honoured or validation is carved from train, and unusable folders are refused by name."""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from audio2image.datasets.imagefolder import (
    format_imagefolder_inspection,
    inspect_imagefolder,
    scan_imagefolder,
    split_imagefolder,
)
from audio2image.util import DatasetError

FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".webp": "WEBP", ".tif": "TIFF",
           ".pgm": "PPM"}


def image_bytes(seed: int, suffix: str = ".jpg", size=(12, 10)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    if suffix.lower() == ".pgm":
        image = image.convert("L")  # PGM is grey by definition
    buffer = io.BytesIO()
    image.save(buffer, format=FORMATS[suffix.lower()])
    return buffer.getvalue()


def write_image(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(image_bytes(seed, path.suffix))
    return path


def make_classes(root: Path, per_class: dict[str, int], seed: int = 0) -> Path:
    for k, (name, count) in enumerate(per_class.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            write_image(root / name / f"{i:03d}.jpg", seed + 100 * k + i)
    return root


def torchvision_samples(root: Path) -> tuple[list[str], list[tuple[str, int]]]:
    from torchvision.datasets import ImageFolder

    folder = ImageFolder(root)
    return folder.classes, [(Path(os.path.relpath(p, root)).as_posix(), t) for p, t in folder.samples]


def all_files(root: Path) -> list[str]:
    return [Path(os.path.relpath(os.path.join(d, f), root)).as_posix() for d, _, files in os.walk(root) for f in files]


def covered(scan) -> bool:
    """Every file under the root is indexed, a stray, or inside a stray folder."""
    indexed, folders = set(scan.paths) | set(scan.strays), [s for s in scan.strays if s.endswith("/")]
    return all(f in indexed or any(f.startswith(s) for s in folders) for f in all_files(scan.root))


@pytest.fixture
def odd_tree(tmp_path):
    """Odd class names, mixed extensions, nested folders whose walk order is not depth-first, broken files."""
    root = tmp_path / "pets"
    for i, name in enumerate(["café/x.jpg", "café/B.JPEG", "café/a/1.png", "café/a b/2.bmp", "café/a/c/3.webp",
                              "10 apples/apple.tif", "10 apples/apple2.PGM", "2cats/z.png", "2cats/sub/y.jpg",
                              "Dog/d.jpg", "Dog/e.jpeg", "dog/d.jpg", "dog/deeper/still/deeper/f.png"]):
        write_image(root / name, i)
    (root / "dog/notes.txt").write_text("not an image")
    (root / "café/a/README").write_text("no extension")
    (root / "2cats/fake.jpg").write_text("this is text, not a JPEG")
    good = image_bytes(99, ".png", size=(120, 90))
    (root / "2cats/truncated.png").write_bytes(good[: len(good) // 2])
    (root / "top-level.jpg").write_bytes(image_bytes(5))  # directly in ROOT: not in any class
    return root


def test_scan_equals_torchvision_imagefolder(odd_tree):
    scan = scan_imagefolder(odd_tree)
    classes, samples = torchvision_samples(odd_tree)
    assert scan.classes == classes == ["10 apples", "2cats", "Dog", "café", "dog"]
    assert list(zip(scan.paths, scan.labels.tolist())) == samples
    assert scan.labels.dtype == np.int64 and scan.folder_splits == {}
    # sorted(os.walk(...)) orders folders by their full path: "café/a b" sorts between "café/a" and "café/a/c"
    assert [p for p in scan.paths if p.startswith("café/")] == [
        "café/B.JPEG", "café/x.jpg", "café/a/1.png", "café/a b/2.bmp", "café/a/c/3.webp"]
    assert {"2cats/fake.jpg", "2cats/truncated.png", "10 apples/apple2.PGM"} <= set(scan.paths)
    assert scan.strays == ["café/a/README", "dog/notes.txt", "top-level.jpg"]
    assert covered(scan)


def test_scan_is_deterministic(odd_tree):
    a, b = scan_imagefolder(odd_tree), scan_imagefolder(odd_tree)
    assert a.paths == b.paths and a.strays == b.strays and np.array_equal(a.labels, b.labels)


@pytest.mark.parametrize("workers", [1, 2])
def test_inspection_finds_undecodable_files(odd_tree, workers):
    report = inspect_imagefolder(odd_tree, workers=workers)
    json.dumps(report)
    bad = {item["path"]: item["reason"] for item in report["undecodable"]}
    assert set(bad) == {"2cats/fake.jpg", "2cats/truncated.png"}
    assert "UnidentifiedImageError" in bad["2cats/fake.jpg"]
    assert report["modes"] == {"L": 1, "RGB": report["images"] - 3}
    assert report["split_source"] == "stratified 60/20/20 at preparation"
    assert report["per_class"] == {"10 apples": 2, "2cats": 4, "Dog": 2, "café": 5, "dog": 2}
    assert report["images_per_class"] == {"min": 2, "median": 2, "max": 5}
    text = format_imagefolder_inspection(report)
    for expected in ("5 classes, 15 images", "10 apples", "café", "dog/notes.txt", "stray entries ignored: 3",
                     "2cats/fake.jpg: UnidentifiedImageError", "2cats/truncated.png", "fail to decode"):
        assert expected in text


def test_inspection_without_decoding(odd_tree):
    report = inspect_imagefolder(odd_tree, decode=False)
    assert "undecodable" not in report and "modes" not in report
    assert "not decoded" in format_imagefolder_inspection(report)


# ----------------------------------------------------------------------------- split folders


def make_split_tree(root: Path, layout: dict[str, dict[str, int]]) -> Path:
    for k, (folder, per_class) in enumerate(layout.items()):
        make_classes(root / folder, per_class, seed=1000 * k)
    return root


@pytest.mark.parametrize("validation", ["val", "valid"])
def test_split_folders_are_the_split(tmp_path, validation):
    root = make_split_tree(tmp_path, {"train": {"cat": 5, "dog": 6, "eel": 3}, validation: {"dog": 2, "cat": 1},
                                      "test": {"eel": 2, "cat": 2}})
    (root / "notes").mkdir()
    write_image(root / "notes/hidden.jpg")  # a folder beside the split folders: not part of the dataset
    (root / "README.md").write_text("hi")
    (root / "train/stray.jpg").write_bytes(image_bytes(3))  # directly in train/, outside any class
    scan = scan_imagefolder(root)
    assert scan.classes == ["cat", "dog", "eel"]
    assert scan.strays == ["README.md", "notes/", "train/stray.jpg"]
    assert covered(scan)
    parts = scan.folder_splits
    assert {k: len(v) for k, v in parts.items()} == {"train": 14, "valid": 3, "test": 4}
    for name, folder in (("train", "train"), ("valid", validation), ("test", "test")):
        classes, samples = torchvision_samples(root / folder)
        got = [(scan.paths[i], scan.classes[scan.labels[i]]) for i in parts[name]]
        assert got == [(f"{folder}/{p}", classes[t]) for p, t in samples]  # labels are train's, by name
    assert all(np.array_equal(parts[k], v) for k, v in split_imagefolder(scan, seed=0).items())
    report = inspect_imagefolder(root, decode=False)
    assert report["split_source"] == f"folders train/{validation}/test"
    assert report["per_split"]["valid"] == {"cat": 1, "dog": 2, "eel": 0}
    text = format_imagefolder_inspection(report)
    assert f"train/{validation}/test" in text and "(train 14, valid 3, test 4)" in text


def test_train_and_test_only_take_validation_from_train(tmp_path):
    root = make_split_tree(tmp_path, {"train": {"cat": 10, "dog": 15, "eel": 5}, "test": {"cat": 3, "dog": 3}})
    scan = scan_imagefolder(root)
    assert set(scan.folder_splits) == {"train", "test"}
    a, b, c = (split_imagefolder(scan, seed) for seed in (0, 0, 1))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["valid"], c["valid"])
    assert np.array_equal(a["test"], scan.folder_splits["test"])
    assert not set(a["train"]) & set(a["valid"])
    assert np.array_equal(np.sort(np.concatenate([a["train"], a["valid"]])), scan.folder_splits["train"])
    valid_per_class = np.bincount(scan.labels[a["valid"]], minlength=3).tolist()
    assert valid_per_class == [2, 3, 1]  # 20% of 10, 15 and 5
    assert all(v.dtype == np.int64 and np.array_equal(v, np.sort(v)) for v in a.values())
    report = inspect_imagefolder(root, decode=False)
    assert report["split_source"] == "folders train/test, validation from train"
    assert "20% of each train class" in format_imagefolder_inspection(report)


def test_split_folder_errors(tmp_path):
    root = make_split_tree(tmp_path / "a", {"train": {"cat": 2, "dog": 2}, "val": {"cat": 1},
                                            "test": {"cat": 1, "wolf": 1}})
    with pytest.raises(DatasetError, match="wolf") as info:
        scan_imagefolder(root)
    assert str(root / "test") in str(info.value)
    root = make_split_tree(tmp_path / "c", {"val": {"cat": 1}, "test": {"cat": 1, "dog": 1}})
    with pytest.raises(DatasetError, match="val/, test/ but no train folder.*only class folders"):
        scan_imagefolder(root)
    root = make_split_tree(tmp_path / "d", {"train": {"cat": 2}, "test": {"cat": 1}})
    with pytest.raises(DatasetError, match="at least two classes") as info:
        scan_imagefolder(root)
    assert str(root / "train") in str(info.value)


# ----------------------------------------------------------------------------- no split folders


def test_split_of_class_folders_is_stratified_and_seeded(tmp_path):
    root = make_classes(tmp_path, {"a": 10, "b": 5, "c": 3, "d": 7})
    scan = scan_imagefolder(root)
    a, b, c = (split_imagefolder(scan, seed) for seed in (4, 4, 5))
    assert set(a) == {"train", "valid", "test"}
    joined = np.concatenate(list(a.values()))
    assert np.array_equal(np.sort(joined), np.arange(len(scan.paths)))
    for positions in a.values():
        assert set(scan.labels[positions]) == {0, 1, 2, 3}  # every class in every split, even 3-image ones
    assert np.bincount(scan.labels[a["train"]]).tolist() == [6, 3, 1, 4]
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not all(np.array_equal(a[k], c[k]) for k in a)


# ----------------------------------------------------------------------------- errors


def test_empty_class_folder_is_named(tmp_path):
    root = make_classes(tmp_path, {"cat": 2, "dog": 1, "eel": 0, "fox": 0})
    (root / "fox/notes.txt").write_text("no image here")
    with pytest.raises(DatasetError, match="eel, fox") as info:
        scan_imagefolder(root)
    message = str(info.value)
    assert ".webp" in message and str(root) in message and "\n" not in message


def test_unusable_roots_are_refused(tmp_path):
    with pytest.raises(DatasetError, match="does not exist") as info:
        scan_imagefolder(tmp_path / "missing")
    assert str(tmp_path / "missing") in str(info.value)
    (tmp_path / "file").write_text("x")
    with pytest.raises(DatasetError, match="not a directory"):
        scan_imagefolder(tmp_path / "file")
    write_image(tmp_path / "flat/1.jpg")
    with pytest.raises(DatasetError, match="no class folders"):
        scan_imagefolder(tmp_path / "flat")
    make_classes(tmp_path / "one", {"cat": 3})
    with pytest.raises(DatasetError, match="only the class folder 'cat'.*at least two classes"):
        scan_imagefolder(tmp_path / "one")


def test_symlink_loop_is_a_stray(tmp_path):
    root = make_classes(tmp_path / "root", {"cat": 2, "dog": 2})
    write_image(root / "cat/sub/3.jpg")
    try:
        os.symlink(root / "cat", root / "cat/sub/back", target_is_directory=True)
        os.symlink(".", root / "dog/self", target_is_directory=True)
    except (OSError, NotImplementedError, AttributeError):
        pytest.skip("symbolic links are not available here")
    scan = scan_imagefolder(root)
    assert scan.paths == ["cat/000.jpg", "cat/001.jpg", "cat/sub/3.jpg", "dog/000.jpg", "dog/001.jpg"]
    assert scan.strays == ["cat/sub/back/", "dog/self/"]
    assert covered(scan)
