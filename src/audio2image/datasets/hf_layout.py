"""Hugging Face's AudioFolder and ImageFolder layouts, read without `datasets`: split folders named by its
keywords, metadata.csv / metadata.jsonl files (datasets/hf_metadata.py), and labels from parent folders.

    >>> layout = read_layout(Path("~/birds"), "AudioFolder", AUDIO_EXTENSIONS, "label", "audio_label_column")

The rules are those `datasets.load_dataset("audiofolder" | "imagefolder", data_dir=ROOT)` applies (datasets 5.x:
data_files.py, packaged_modules/folder_based_builder):

- A split folder is a folder at ROOT's top whose name is a keyword of a split (train, training; validation, valid,
  dev, val; test, testing, eval, evaluation), alone or joined to other text by one of ``-._``, a space or a digit
  (``train-0``, ``my_test``), matched case-sensitively. Several folders of one split are read together; the other
  entries at the top are not read. Without split folders everything is in train.
- Hidden files and folders (``.x``) and ``__x`` folders are not read.
- Metadata files are the metadata.csv / metadata.jsonl files inside the split folders (at any depth), or anywhere
  under ROOT without split folders; all of one kind. Once there is one, only their rows make items (files they do
  not name are left out, listed here) and folder names give no label.
- Without metadata, a file's label is its parent folder's name, given only when every file lies at the same depth
  and there are at least two such names (otherwise `datasets` gives no labels: here that is an error).

Deliberate differences, which `inspect` names where a tree has them: split folders below ROOT's top (``data/train/``)
are ordinary folders; a tree without split folders is not split by file names (``train_01.wav``: `datasets` would,
leaving out every other file); a folder whose name holds two splits' keywords is left out (`datasets` reads it
into both); rows that `datasets` would fail on or yield unusable are skipped and listed with their file and line.
"""
from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePath

from audio2image.datasets.hf_metadata import Row, read_metadata
from audio2image.datasets.splits import SPLITS
from audio2image.util import DatasetError

SPLIT_KEYWORDS = {"train": ("train", "training"), "valid": ("validation", "valid", "dev", "val"),
                  "test": ("test", "testing", "eval", "evaluation")}
SPLIT_WORDS = {"train": "train", "valid": "validation", "test": "test"}
METADATA_FILES = ("metadata.csv", "metadata.jsonl")
DEFAULT_LABEL_COLUMN = "label"
# libsndfile's formats as soundfile names them (soundfile.available_formats(), lower-cased) and the two it decodes
# beyond them: the set `datasets` derives its AudioFolder extensions from (it adds video containers, which soundfile
# cannot decode).
AUDIO_EXTENSIONS = (".aiff", ".au", ".avr", ".caf", ".flac", ".htk", ".ircam", ".mat4", ".mat5", ".mp3", ".mpc2k",
                    ".nist", ".ogg", ".opus", ".paf", ".pvf", ".raw", ".rf64", ".sd2", ".sds", ".svx", ".voc",
                    ".w64", ".wav", ".wavex", ".wve", ".xi")
_SEPARATORS = r"\-._ 0-9"  # what may join a keyword to other text in a name
_IN_FOLDER = {split: re.compile(rf"(?:.*[{_SEPARATORS}])?(?:{'|'.join(words)})(?:[{_SEPARATORS}].*)?", re.S)
              for split, words in SPLIT_KEYWORDS.items()}
_IN_FILE = {split: re.compile(rf"(?:.*[{_SEPARATORS}])?(?:{'|'.join(words)})[{_SEPARATORS}].*", re.S)
            for split, words in SPLIT_KEYWORDS.items()}


@dataclass
class Layout:
    root: Path
    kind: str  # "AudioFolder" | "ImageFolder", for messages
    parts: dict[str, list[Row]]  # the items of each split that has any, in SPLITS order
    folders: dict[str, list[str]]  # split -> its folders at ROOT's top; {} without split folders
    metadata: list[str]  # the metadata files read, relative to root; [] when labels come from folders
    label_column: str | None  # None: labels from parent folders
    problems: list[dict] = field(default_factory=list)  # rows skipped: {"file", "line", "reason"}
    unread: list[dict] = field(default_factory=list)  # entries not read: {"path", "reason"}
    notes: list[str] = field(default_factory=list)  # where `datasets` would read this tree otherwise

    @property
    def rows(self) -> list[Row]:
        return [row for rows in self.parts.values() for row in rows]


def splits_named(name: str, patterns=None) -> list[str]:
    """The splits whose keywords a folder's name holds (by default; `_IN_FILE`: a file's name)."""
    return [split for split, pattern in (patterns or _IN_FOLDER).items() if pattern.fullmatch(name)]


def _hidden(name: str, folder: bool) -> bool:
    return name.startswith(".") or (folder and name.startswith("__"))


def split_folders(root: Path) -> tuple[dict[str, list[str]], list[dict]]:
    """The split folders at ROOT's top ({split: sorted names}, in SPLITS order) and those naming several splits.

    Where folders named like splits are fewer than half of the folders at the top, they are class folders whose
    names happen to hold a keyword (Caltech-256's 257 classes with a `test-tube/`, say), and there are no split
    folders: Hugging Face's loader would take them as the splits and leave out every other class (`differences`
    notes it)."""
    found, unread, folders = {}, [], 0
    for entry in sorted(os.scandir(root), key=lambda entry: entry.name):
        if entry.is_dir() and not _hidden(entry.name, True):
            folders += 1
            named = splits_named(entry.name)
            if len(named) == 1:
                found.setdefault(named[0], []).append(entry.name)
            elif named:
                unread.append({"path": entry.name + "/", "reason": "its name holds the keywords of "
                               + " and ".join(SPLIT_WORDS[split] for split in named)})
    if 2 * (sum(map(len, found.values())) + len(unread)) < folders:
        return {}, []
    return {split: found[split] for split in SPLITS if split in found}, unread


def walk_files(root: Path, top: str = "") -> list[str]:
    """Every file under ROOT/top, relative to root (posix, sorted), hidden ones left out."""
    files = []
    for folder, folders, names in os.walk(root / top if top else root):
        folders[:] = [name for name in folders if not _hidden(name, True)]
        relative = PurePath(os.path.relpath(folder, root)).as_posix()
        files += [name if relative == "." else f"{relative}/{name}" for name in names if not _hidden(name, False)]
    return sorted(files)


def differences(paths: list[str], split_folders_found: bool) -> list[str]:
    """Where `datasets` would split the files at `paths` otherwise: by folders below the top, by file names."""
    deeper = sorted({"/".join(parts[:i + 1]) for parts in (path.split("/") for path in paths)
                     for i in range(1, len(parts) - 1) if splits_named(parts[i])})
    notes = []
    if deeper:
        notes.append(f"folders below the top are named like split folders ({', '.join(d + '/' for d in deeper[:3])}"
                     f"{', ...' if len(deeper) > 3 else ''}): read as ordinary folders here, where Hugging Face's "
                     "loader would split by them")
    tops = sorted({path.split("/")[0] for path in paths if "/" in path})
    like = [top for top in tops if splits_named(top)] if not split_folders_found else []
    if like:
        notes.append(f"{_joined([top + '/' for top in like[:3]])} {'is' if len(like) == 1 else 'are'} named like "
                     f"split folders but beside {len(tops) - len(like)} other folders: read as class folders here, "
                     "where Hugging Face's loader would take them as the splits and leave out the rest")
    named = [path for path in paths if splits_named(posixpath.basename(path), _IN_FILE)]
    if named and not split_folders_found and not deeper:
        notes.append(f"{len(named)} file names name a split ({', '.join(named[:3])}{', ...' if len(named) > 3 else ''})"
                     ": Hugging Face's loader would split by them and leave out every other file; audio2image does "
                     "not split by file names")
    return notes


def _split_files(root: Path, folders: dict[str, list[str]]) -> dict[str, list[str]]:
    if not folders:
        return {"train": walk_files(root)}
    return {split: sorted(path for name in names for path in walk_files(root, name))
            for split, names in folders.items()}


def _outside(root: Path, folders: dict[str, list[str]]) -> list[dict]:
    """The entries at ROOT's top beside the split folders: not part of the dataset."""
    inside = {name for names in folders.values() for name in names}
    return [{"path": entry.name + ("/" if entry.is_dir() else ""), "reason": "outside the split folders"}
            for entry in sorted(os.scandir(root), key=lambda entry: entry.name)
            if entry.name not in inside and not _hidden(entry.name, entry.is_dir())]


def _metadata_files(root: Path, files: dict[str, list[str]], folders: dict[str, list[str]]) -> dict[str, list[str]]:
    """The metadata files of each split; a DatasetError for a mix of kinds, or for metadata at ROOT's top that the
    split folders would leave unread while none of them has its own."""
    found = {split: [path for path in paths if posixpath.basename(path) in METADATA_FILES]
             for split, paths in files.items()}
    kinds = sorted({posixpath.basename(path) for paths in found.values() for path in paths})
    if len(kinds) > 1:
        raise DatasetError(f"{root} holds both {kinds[0]} and {kinds[1]} files; keep metadata files of one kind "
                           "(as Hugging Face's loader requires).")
    top = [name for name in METADATA_FILES if (root / name).is_file()]
    if folders and top and not kinds:
        names = _joined([f"{name}/" for names in folders.values() for name in names])
        raise DatasetError(f"{root / top[0]} lies outside the split folders ({names}), where Hugging Face's loader "
                           "does not read it; put a metadata file in each split folder, with file_name relative to "
                           "that folder (or remove the split folders).")
    return {split: paths for split, paths in found.items() if paths}


def _folder_rows(root: Path, files: dict[str, list[str]], folders: dict[str, list[str]], kind: str,
                 elsewise: str) -> dict[str, list[Row]]:
    """Items labelled by their parent folder's name, by Hugging Face's rule (see the module docstring)."""
    paths = [path for split_paths in files.values() for path in split_paths]
    layout = (f"Hugging Face's {kind} layout takes labels from a metadata.csv or metadata.jsonl (file_name and "
              "label columns) or, without one, from each file's parent folder, every file at the same depth "
              "(ROOT/<label>/<file> or ROOT/<split>/<label>/<file>)")
    if not paths:
        raise DatasetError(f"{root} holds no file this layout reads; {layout}" + (f", {elsewise}" if elsewise else "")
                           + ".")
    depths = {}
    for path in paths:
        depths.setdefault(path.count("/"), path)
    if len(depths) > 1:
        shallow, deep = depths[min(depths)], depths[max(depths)]
        raise DatasetError(f"{root}: the files lie at different depths ({shallow}, {deep}), so their parent folders "
                           f"give no labels; {layout}.")
    split_names = {name for names in folders.values() for name in names}
    labels = {posixpath.basename(posixpath.dirname(path)) or root.name for path in paths}
    if split_names and split_names >= labels:
        raise DatasetError(f"{root}: the files lie directly in the split folders, so there are no label folders; "
                           f"{layout}.")
    if len(labels) < 2:
        raise DatasetError(f"{root}: every file lies in the folder {labels.pop()!r}, so folders give a single label "
                           f"and Hugging Face's loader gives none; {layout}.")
    return {split: [Row(path, (posixpath.basename(posixpath.dirname(path)),), "", 0) for path in split_paths]
            for split, split_paths in files.items() if split_paths}


def read_layout(root: Path, kind: str, extensions: tuple[str, ...] | None, label_column: str, key: str,
                folder_labels: bool = True, elsewise: str = "") -> Layout | None:
    """The items of the tree at ROOT as Hugging Face's `kind` reads it (see the module docstring). `extensions`:
    the data files' (lower case; None: any), read when labels come from folders and listed when no metadata row
    names them; `key`: the config key of `label_column`. Without metadata files: None unless `folder_labels`.
    `elsewise`: the other layouts the dataset takes, for the message when the tree holds no file this one reads."""
    root = Path(root)
    folders, unread = split_folders(root)
    unread += _outside(root, folders) if folders else []
    files = _split_files(root, folders)
    metadata = _metadata_files(root, files, folders)
    if not metadata and not folder_labels:
        return None
    is_data = (lambda path: extensions is None or posixpath.splitext(path)[1].lower() in extensions)
    data = {split: [path for path in paths if is_data(path) and posixpath.basename(path) not in METADATA_FILES]
            for split, paths in files.items()}
    notes = differences([path for paths in data.values() for path in paths], bool(folders))
    if not metadata:
        unread += [{"path": path, "reason": "not a file of this kind (by its extension)"}
                   for paths in files.values() for path in paths if not is_data(path)]
        parts = _with_train(root, _folder_rows(root, data, folders, kind, elsewise))
        return Layout(root, kind, parts, folders, [], None, [], unread, notes)
    parts, problems, seen = {}, [], {}
    for split, metadata_files in metadata.items():
        for relative in metadata_files:
            rows, skipped = read_metadata(root, relative, label_column, key, seen)
            parts.setdefault(split, []).extend(rows)
            problems += skipped
    unread += [{"path": path, "reason": "no metadata row names it"}
               for paths in data.values() for path in paths if path not in seen]
    unread += [{"path": folder + "/", "reason": "no metadata file inside"} for split, names in folders.items()
               if split not in metadata for folder in names]
    parts = _with_train(root, {split: parts[split] for split in SPLITS if parts.get(split)})
    return Layout(root, kind, parts, folders, [path for paths in metadata.values() for path in paths],
                  label_column, problems, unread, notes)


def _with_train(root: Path, parts: dict[str, list[Row]]) -> dict[str, list[Row]]:
    if parts and "train" not in parts:
        held = _joined([SPLIT_WORDS[split] for split in parts])
        raise DatasetError(f"{root}: no item is in train, only in {held}; training needs a train split folder "
                           f"(train/ or training/, or a name joining one to other text with -, ., _ or a digit).")
    return parts


def _joined(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def describe(layout: Layout) -> str:
    """One line: where the labels come from and the split folders, e.g. "Hugging Face AudioFolder layout:
    metadata.jsonl in train/ and test/, label column `label`, split folders train/ and test/ (validation cut
    from train at preparation)"."""
    if layout.metadata:
        places = list(dict.fromkeys(posixpath.dirname(path) for path in layout.metadata))  # in split order
        name = posixpath.basename(layout.metadata[0])
        where = f"{name} " + ("at the root" if places == [""] else "in " + _joined([p + "/" for p in places]))
        labels = f"label column `{layout.label_column}`"
    else:
        where, labels = "no metadata file", "labels from parent folders"
    return f"Hugging Face {layout.kind} layout: {where}, {labels}, {split_words(layout.folders, set(layout.parts))}"


def split_words(folders: dict[str, list[str]], given: set[str]) -> str:
    """The split in words: the split folders and what preparation cuts from train."""
    if not folders:
        return "no split folders (a seeded 60/20/20 split at preparation)"
    missing = [SPLIT_WORDS[split] for split in SPLITS if split not in given]
    cut = f" ({_joined(missing)} cut from train at preparation)" if missing else ""
    return "split folders " + _joined([f"{name}/" for names in folders.values() for name in names]) + cut
