"""Bring your own images: ``ROOT/<class>/**/<image>``, read with torchvision ImageFolder's rules.

    >>> scan = scan_imagefolder(Path("~/pets")); parts = split_imagefolder(scan, seed=0)

Classes are the sorted names of ROOT's sub-folders and each class folder is walked recursively (following
links), so the classes, paths and labels are exactly ``torchvision.datasets.ImageFolder(ROOT)``'s; a model
trained here labels the same folder the same way there. Files are chosen by extension only: the scan never
decodes, so a text file named ``.jpg`` is indexed, and inspection (or store preparation) finds it.

A root whose top holds split folders, named as Hugging Face's loader names them (``train/``, ``validation/``,
``val/``, ``test/``, ...: datasets/hf_layout.py), brings its own split, each folder read as an ImageFolder with
train's classes; the splits it lacks are cut from train at preparation (``train/`` and ``test/``: validation, a
stratified 20% of train). Without split folders every class is split 60/20/20, as for Caltech-256.

A tree with metadata.csv or metadata.jsonl files is read in Hugging Face's ImageFolder layout instead: each row
names an image (``file_name``, relative to the metadata file's folder) and its class (a label column, ``label``
unless told), and folder names give no label, as there.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path, PurePath

import numpy as np

from audio2image.datasets.hf_layout import (DEFAULT_LABEL_COLUMN, SPLIT_WORDS, Layout, describe, differences,
                                            read_layout, split_folders)
from audio2image.datasets.inspection import capped, capped_lines, count_stats, decode_findings, decode_lines, row_place
from audio2image.datasets.splits import SPLITS, complete_splits, stratified_split
from audio2image.util import DatasetError

# ImageFolder's IMG_EXTENSIONS, matched against the lower-cased file name.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
CLASS_FOLDERS = "class folders (torchvision ImageFolder's rules)"


@dataclass
class FolderScan:
    root: Path
    classes: list[str]  # ImageFolder's `classes` (sorted folder names); a label is a position in it
    paths: list[str]  # image paths relative to root, posix, in ImageFolder's sample order
    labels: np.ndarray  # int64 class index per path (ImageFolder's target)
    folder_splits: dict[str, np.ndarray]  # positions per split from split folders; {} without split folders
    strays: list[str]  # entries not indexed, relative to root; folders end with "/"
    folders: dict[str, list[str]] = field(default_factory=dict)  # split -> its folders at ROOT's top
    layout: str = CLASS_FOLDERS  # how the tree was read, in words
    problems: list[dict] = field(default_factory=list)  # metadata rows skipped: {"file", "line", "reason"}
    unread: list[dict] = field(default_factory=list)  # metadata layout: the entries not read, {"path", "reason"}
    notes: list[str] = field(default_factory=list)  # where Hugging Face's loader would read the tree otherwise


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


def _scan_of_metadata(layout: Layout) -> FolderScan:
    """A scan of a tree in Hugging Face's ImageFolder layout with metadata files: one class per image."""
    rows = layout.rows
    multi = next((row for row in rows if len(row.labels) > 1), None)
    if multi is not None:
        raise DatasetError(f"{layout.root / multi.file}: line {multi.line}: {multi.path!r} has {len(multi.labels)} "
                           f"labels ({';'.join(multi.labels)}), but an image store is single-label classification; "
                           "give every image one label.")
    classes = sorted({row.labels[0] for row in rows})
    if len(classes) < 2:
        what = f"only the label {classes[0]!r}" if classes else f"no usable row ({len(layout.problems)} skipped)"
        raise DatasetError(f"image folder {layout.root}: its metadata ({', '.join(layout.metadata)}) gives {what}, "
                           "but classification needs at least two classes.")
    index = {name: i for i, name in enumerate(classes)}
    folder_splits, start = {}, 0
    for split, split_rows in layout.parts.items():
        folder_splits[split] = np.arange(start, start + len(split_rows), dtype=np.int64)
        start += len(split_rows)
    return FolderScan(root=layout.root, classes=classes, paths=[row.path for row in rows],
                      labels=np.array([index[row.labels[0]] for row in rows], dtype=np.int64),
                      folder_splits=folder_splits if layout.folders else {},
                      strays=sorted(entry["path"] for entry in layout.unread), folders=layout.folders,
                      layout=describe(layout), problems=layout.problems, unread=layout.unread, notes=layout.notes)


def _scan_of_split_folders(root: Path, folders: dict[str, list[str]]) -> tuple:
    """(classes, paths, labels, folder_splits, strays) of class folders inside split folders: the classes are
    those of train's folders, and the folders of the other splits are read with them."""
    base = str(root)
    if "train" not in folders:
        held = ", ".join(f"{name}/" for names in folders.values() for name in names)
        raise DatasetError(f"image folder {root} holds {held} but no train folder (train/ or training/); lay it out "
                           "as split folders with train/ among them, or only class folders (ROOT/<class>/<image>).")
    inside = {name for names in folders.values() for name in names}
    # Files beside the split folders and any other folder there are not part of the dataset.
    strays = sorted(_rel(entry.path, base) + ("/" if entry.is_dir() else "") for entry in os.scandir(base)
                    if entry.name not in inside)
    classes = sorted({entry.name for name in folders["train"] for entry in os.scandir(root / name) if entry.is_dir()})
    class_to_idx = {name: i for i, name in enumerate(classes)}
    paths, labels, folder_splits = [], [], {}
    for split, names in folders.items():
        first = len(paths)
        for name in names:
            _, more_paths, more_labels, more_strays = _read_folder(base, name, class_to_idx)
            paths, labels, strays = paths + more_paths, labels + more_labels, strays + more_strays
        folder_splits[split] = np.arange(first, len(paths), dtype=np.int64)
    return classes, paths, labels, folder_splits, strays


def scan_imagefolder(root: Path, label_column: str = DEFAULT_LABEL_COLUMN) -> FolderScan:
    """Classes, image paths and labels under ROOT as ImageFolder sees them, plus any split folders; a tree with
    metadata files as Hugging Face's ImageFolder reads it, its classes in `label_column`."""
    root = Path(root).expanduser()
    if not root.is_dir():
        what = "is not a directory" if root.exists() else "does not exist"
        raise DatasetError(f"image folder {root} {what}; give the folder that holds one sub-folder per class.")
    layout = read_layout(root, "ImageFolder", IMAGE_EXTENSIONS, label_column, "image_label_column",
                         folder_labels=False)
    if layout is not None:
        return _scan_of_metadata(layout)
    if label_column != DEFAULT_LABEL_COLUMN:
        raise DatasetError(f"image folder {root} has no metadata.csv or metadata.jsonl, so its classes are its class "
                           f"folders; image_label_column ({label_column!r}) names a metadata column: leave it at "
                           f"{DEFAULT_LABEL_COLUMN!r}.")
    folders, _ = split_folders(root)
    if folders:
        classes, paths, labels, folder_splits, strays = _scan_of_split_folders(root, folders)
    else:
        classes, paths, labels, strays = _read_folder(str(root), "")
        folder_splits = {}
    if len(classes) < 2:
        where = root / folders["train"][0] if folders else root
        raise DatasetError(f"image folder {where} has only the class folder {classes[0]!r}, but classification "
                           f"needs at least two classes; add another class folder.")
    return FolderScan(root=root, classes=classes, paths=paths, labels=np.asarray(labels, dtype=np.int64),
                      folder_splits=folder_splits, strays=sorted(strays), folders=folders,
                      notes=differences(paths, bool(folders)))


# ----------------------------------------------------------------------------- splits


def split_imagefolder(scan: FolderScan, seed: int) -> dict[str, np.ndarray]:
    """Sorted positions into `scan.paths` for "train", "valid", "test": disjoint and covering all.

    Split folders are used as they are (seed unused); the splits they lack are cut from train, stratified
    (train/ and test/: validation a 20% of each train class); a root of class folders is split 60/20/20 per
    class. Depends only on (scan, seed).
    """
    if not scan.folder_splits:
        return stratified_split(scan.labels, seed)
    return complete_splits(scan.folder_splits, seed, scan.labels)


def count_imagefolder(root: Path, *, split_seed: int = 0, label_column: str = DEFAULT_LABEL_COLUMN, **_) -> dict:
    """What a store of the image folder at `root` will hold, from its file names (or metadata) alone, nothing
    decoded: {"splits": {split: images}, "labels": classes}. The registry's `count`."""
    scan = scan_imagefolder(root, label_column)
    parts = split_imagefolder(scan, split_seed)
    return {"splits": {name: len(positions) for name, positions in parts.items()}, "labels": len(scan.classes)}


# ----------------------------------------------------------------------------- inspection


def split_source(scan: FolderScan) -> str:
    """Where the split comes from, in words (the inspection and the store's manifest say it)."""
    if not scan.folder_splits:
        return "stratified 60/20/20 at preparation"
    names = "/".join(name for split in scan.folder_splits for name in scan.folders[split])
    missing = [SPLIT_WORDS[split] for split in SPLITS if split not in scan.folder_splits]
    return f"folders {names}" + (f", {' and '.join(missing)} from train" if missing else "")


def inspect_imagefolder(root: Path, decode: bool = True, workers: int = 1,
                        label_column: str = DEFAULT_LABEL_COLUMN) -> dict:
    """Report the layout and split source, classes, images per class (per split folder), strays (with their
    reasons in Hugging Face's metadata layout), metadata rows skipped and (with decode) the PIL modes and the
    images that do not decode."""
    scan = scan_imagefolder(root, label_column)
    per_class = np.bincount(scan.labels, minlength=len(scan.classes)).tolist()
    report = {
        "root": str(scan.root),
        "layout": scan.layout,
        "problems": capped(scan.problems),
        "unread": capped(scan.unread),
        "notes": scan.notes,
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
        f"layout: {report['layout']}",
        f"split: {report['split_source']}",
        f"{report['classes']} classes, {report['images']} images" + (f" ({sizes})" if sizes else ""),
        f"images per class: min {stats['min']}, median {stats['median']}, max {stats['max']}",
    ]
    missing = [SPLIT_WORDS[name] for name in SPLITS if per_split and name not in per_split]
    if missing:
        share = "a stratified 20%" + (" each" if len(missing) > 1 else "")
        lines.append(f"{' and '.join(missing)}: {share} of each train class, chosen by the seed at preparation")
    if report["problems"]["count"]:
        lines += capped_lines("metadata rows skipped", report["problems"], lambda p: f"{row_place(p)}: {p['reason']}")
    if report["unread"]["count"]:
        lines += capped_lines("entries not read", report["unread"], lambda entry: f"{entry['path']}: {entry['reason']}")
    else:
        lines.append(f"stray entries ignored: {len(report['strays'])}")
        lines += [f"  {stray}" for stray in report["strays"]]
    lines += [f"note: {note}" for note in report["notes"]]
    lines += decode_lines(report)
    width = max([32, *(len(name) + 1 for name in report["per_class"])])
    lines.append(f"{'images per class:':<{width + 2}}" + "".join(f" {name:>6}" for name in per_split))
    for name, count in report["per_class"].items():
        columns = [counts[name] for counts in per_split.values()] or [count]
        lines.append(f"  {name:<{width}}" + "".join(f" {c:>6}" for c in columns))
    return "\n".join(lines)
