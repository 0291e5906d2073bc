"""Bring your own images: ``ROOT/<class>/**/<image>``, read with torchvision ImageFolder's rules.

    >>> scan = scan_imagefolder(Path("~/pets")); parts = split_imagefolder(scan, seed=0)

Classes are the sorted names of ROOT's sub-folders and each class folder is walked recursively (following
links), so the classes, paths and labels are exactly ``torchvision.datasets.ImageFolder(ROOT)``'s; a model
trained here labels the same folder the same way there. Files are chosen by extension only: the scan never
decodes, so a text file named ``.jpg`` is indexed, and inspection (or store preparation) finds it.

A root that holds ``train/``, ``val/`` (or ``valid/``) and ``test/`` brings its own split, each read as an
ImageFolder with train's classes; ``train/`` and ``test/`` alone take validation from train at preparation.
Without split folders every class is split 60/20/20, as for Caltech-256.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePath

import numpy as np

from audio2image.datasets.inspection import count_stats, decode_findings, decode_lines
from audio2image.datasets.splits import SPLITS, stratified_split
from audio2image.util import DatasetError

# ImageFolder's IMG_EXTENSIONS, matched against the lower-cased file name.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
VALIDATION_FOLDERS = ("val", "valid")
CARVED_RATIOS = (0.8, 0.2, 0.0)  # train/test folders only: a stratified 20% of train becomes validation
_LAYOUT = "lay it out as either train/, val/ and test/ or only class folders (ROOT/<class>/<image>)"


@dataclass
class FolderScan:
    root: Path
    classes: list[str]  # ImageFolder's `classes` (sorted folder names); a label is a position in it
    paths: list[str]  # image paths relative to root, posix, in ImageFolder's sample order
    labels: np.ndarray  # int64 class index per path (ImageFolder's target)
    folder_splits: dict[str, np.ndarray]  # positions per split from split folders; {} without split folders
    strays: list[str]  # entries not indexed, relative to root; folders end with "/"


# ----------------------------------------------------------------------------- scanning


def _rel(path: str, root: str) -> str:
    return PurePath(os.path.relpath(path, root)).as_posix()


def _walk_class(root: str, top: str) -> tuple[list[str], list[str]]:
    """(image paths, stray paths) under one class folder, relative to root, in ImageFolder's order.

    ImageFolder runs ``sorted(os.walk(top, followlinks=True))``: directories in the sorted order of their
    full path strings (not depth-first), files sorted within each. A link back to a folder on the way down
    would make that walk recurse until the OS refuses the path, so such a folder is not entered but reported;
    everything that terminates (two links to one folder, say) is walked exactly as ImageFolder walks it.
    """
    walked, strays = [], []
    chains = {top: frozenset([os.path.realpath(top)])}  # folder -> real paths from the class folder down to it

    def unreadable(error: OSError) -> None:  # ImageFolder skips these silently; we report them
        strays.append(_rel(error.filename, root) + "/")

    for dirpath, dirnames, filenames in os.walk(top, onerror=unreadable, followlinks=True):
        chain = chains.pop(dirpath)
        for name in list(dirnames):
            path = os.path.join(dirpath, name)
            real = os.path.realpath(path)
            if real in chain:
                dirnames.remove(name)  # topdown walk: pruning here is what stops the loop
                strays.append(_rel(path, root) + "/")
            else:
                chains[path] = chain | {real}
        walked.append((dirpath, filenames))
    images = []
    for dirpath, filenames in sorted(walked):
        for name in sorted(filenames):
            target = images if name.lower().endswith(IMAGE_EXTENSIONS) else strays
            target.append(_rel(os.path.join(dirpath, name), root))
    return images, strays


def _read_folder(root: str, folder: str, class_to_idx: dict[str, int] | None = None
                 ) -> tuple[list[str], list[str], list[int], list[str]]:
    """(classes, paths, labels, strays) of one ImageFolder-style folder (root itself or a split folder).

    Labels come from `class_to_idx` when given (validation and test use train's classes).
    """
    top = os.path.join(root, folder) if folder else root
    shown = Path(top)
    entries = list(os.scandir(top))
    classes = sorted(entry.name for entry in entries if entry.is_dir())  # ImageFolder's find_classes
    strays = sorted(_rel(entry.path, root) for entry in entries if not entry.is_dir())
    if not classes:
        raise DatasetError(f"image folder {shown} has no class folders; put each class's images in its own "
                           f"sub-folder ({shown}/<class>/<image>).")
    if class_to_idx is None:
        class_to_idx = {name: i for i, name in enumerate(classes)}
    unknown = [name for name in classes if name not in class_to_idx]
    if unknown:
        raise DatasetError(f"{shown} has class folders that train/ lacks: {', '.join(unknown)}; "
                           f"add them to train/ or remove them from {shown}.")
    paths, labels, empty = [], [], []
    for name in classes:
        images, class_strays = _walk_class(root, os.path.join(top, name))
        strays += class_strays
        if not images:
            empty.append(name)
        paths += images
        labels += [class_to_idx[name]] * len(images)
    if empty:
        raise DatasetError(f"class folders in {shown} hold no image file ({', '.join(IMAGE_EXTENSIONS)}): "
                           f"{', '.join(empty)}; add images to them or remove them.")
    return classes, paths, labels, strays


def _split_folders(root: Path, folders: list[str]) -> list[str] | None:
    """The split folders in SPLITS order (validation possibly absent), or None for a root of class folders."""
    present = set(folders)
    if "train" not in present and "test" not in present:
        return None
    if "train" not in present or "test" not in present:
        have, lack = ("train", "test") if "train" in present else ("test", "train")
        raise DatasetError(f"image folder {root} holds {have}/ but no {lack}/; {_LAYOUT}.")
    validation = [name for name in VALIDATION_FOLDERS if name in present]
    if len(validation) > 1:
        raise DatasetError(f"image folder {root} holds both val/ and valid/, so the validation split is "
                           f"ambiguous; merge them into one or remove one.")
    return ["train", *validation, "test"]


def scan_imagefolder(root: Path) -> FolderScan:
    """Classes, image paths and labels under ROOT as ImageFolder sees them, plus any split folders."""
    root = Path(root).expanduser()
    if not root.is_dir():
        what = "is not a directory" if root.exists() else "does not exist"
        raise DatasetError(f"image folder {root} {what}; give the folder that holds one sub-folder per class.")
    base = str(root)
    folders = sorted(entry.name for entry in os.scandir(base) if entry.is_dir())
    split = _split_folders(root, folders)
    if split is None:
        classes, paths, labels, strays = _read_folder(base, "")
        folder_splits = {}
    else:
        # Files beside the split folders and any other folder there are not part of the dataset.
        strays = sorted(_rel(entry.path, base) + ("/" if entry.is_dir() else "") for entry in os.scandir(base)
                        if entry.name not in split)
        classes, paths, labels, train_strays = _read_folder(base, "train")
        strays += train_strays
        class_to_idx = {name: i for i, name in enumerate(classes)}
        folder_splits = {"train": np.arange(len(paths), dtype=np.int64)}
        for folder in split[1:]:
            _, more_paths, more_labels, more_strays = _read_folder(base, folder, class_to_idx)
            name = "test" if folder == "test" else "valid"
            folder_splits[name] = np.arange(len(paths), len(paths) + len(more_paths), dtype=np.int64)
            paths, labels, strays = paths + more_paths, labels + more_labels, strays + more_strays
    if len(classes) < 2:
        where = root / "train" if split else root
        raise DatasetError(f"image folder {where} has only the class folder {classes[0]!r}, but classification "
                           f"needs at least two classes; add another class folder.")
    return FolderScan(root=root, classes=classes, paths=paths, labels=np.asarray(labels, dtype=np.int64),
                      folder_splits=folder_splits, strays=sorted(strays))


# ----------------------------------------------------------------------------- splits


def split_imagefolder(scan: FolderScan, seed: int) -> dict[str, np.ndarray]:
    """Sorted positions into `scan.paths` for "train", "valid", "test": disjoint and covering all.

    Split folders are used as they are (seed unused); train/ and test/ alone give validation a stratified 20%
    of each train class; a root of class folders is split 60/20/20 per class. Depends only on (scan, seed).
    """
    folders = scan.folder_splits
    if not folders:
        return stratified_split(scan.labels, seed)
    if "valid" in folders:
        return {name: np.sort(folders[name]).astype(np.int64) for name in SPLITS}
    train = np.sort(folders["train"])
    carved = stratified_split(scan.labels[train], seed, ratios=CARVED_RATIOS)
    return {"train": train[carved["train"]], "valid": train[carved["valid"]],
            "test": np.sort(folders["test"]).astype(np.int64)}


def count_imagefolder(root: Path, *, split_seed: int = 0, **_) -> dict:
    """What a store of the image folder at `root` will hold, from its file names alone (nothing decoded):
    {"splits": {split: images}, "labels": classes}. The registry's `count`."""
    scan = scan_imagefolder(root)
    parts = split_imagefolder(scan, split_seed)
    return {"splits": {name: len(positions) for name, positions in parts.items()}, "labels": len(scan.classes)}


# ----------------------------------------------------------------------------- inspection


def split_source(scan: FolderScan) -> str:
    """Where the split comes from, in words (the inspection and the store's manifest say it)."""
    if not scan.folder_splits:
        return "stratified 60/20/20 at preparation"
    if "valid" not in scan.folder_splits:
        return "folders train/test, validation from train"
    validation = scan.paths[scan.folder_splits["valid"][0]].split("/", 1)[0]  # "val" or "valid"
    return f"folders train/{validation}/test"


def inspect_imagefolder(root: Path, decode: bool = True, workers: int = 1) -> dict:
    """Report the split source, classes, images per class (per split folder), strays and (with decode) the
    PIL modes and the images that do not decode."""
    scan = scan_imagefolder(root)
    per_class = np.bincount(scan.labels, minlength=len(scan.classes)).tolist()
    report = {
        "root": str(scan.root),
        "split_source": split_source(scan),
        "classes": len(scan.classes),
        "images": len(scan.paths),
        "per_class": dict(zip(scan.classes, per_class)),
        "images_per_class": count_stats(per_class),
        "per_split": {},  # split folder -> {class: images}; empty without split folders
        "strays": scan.strays,
        "decoded": decode,
    }
    for name in SPLITS:
        if name in scan.folder_splits:
            counts = np.bincount(scan.labels[scan.folder_splits[name]], minlength=len(scan.classes)).tolist()
            report["per_split"][name] = dict(zip(scan.classes, counts))
    if decode:
        report.update(decode_findings(scan.root, scan.paths, workers))
    return report


def format_imagefolder_inspection(report: dict) -> str:
    """Human-readable text of an `inspect_imagefolder` report."""
    stats, per_split = report["images_per_class"], report["per_split"]
    sizes = ", ".join(f"{name} {sum(counts.values())}" for name, counts in per_split.items())
    lines = [
        f"image folder at {report['root']}",
        f"split: {report['split_source']}",
        f"{report['classes']} classes, {report['images']} images" + (f" ({sizes})" if sizes else ""),
        f"images per class: min {stats['min']}, median {stats['median']}, max {stats['max']}",
    ]
    if per_split and "valid" not in per_split:
        lines.append("validation: a stratified 20% of each train class, chosen by the seed at preparation")
    lines.append(f"stray entries ignored: {len(report['strays'])}")
    lines += [f"  {stray}" for stray in report["strays"]]
    lines += decode_lines(report)
    width = max([32, *(len(name) + 1 for name in report["per_class"])])
    lines.append(f"{'images per class:':<{width + 2}}" + "".join(f" {name:>6}" for name in per_split))
    for name, count in report["per_class"].items():
        columns = [counts[name] for counts in per_split.values()] or [count]
        lines.append(f"  {name:<{width}}" + "".join(f" {c:>6}" for c in columns))
    return "\n".join(lines)
