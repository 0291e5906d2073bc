"""Bring your own audio: ``ROOT/labels.csv`` names each clip's file, its labels and optionally its split; without
it, the folder is read in Hugging Face's AudioFolder layout (datasets/hf_layout.py: metadata.csv or metadata.jsonl
files, or class folders, optionally in split folders).

    >>> labels = read_labels(Path("~/sounds")); parts = split_clips(labels, task_of(labels), seed=0)

``labels.csv`` is comma-separated UTF-8 (a BOM is fine, fields may be quoted) whose header names the columns
``path`` (relative to ROOT), ``labels`` (separated by ``;``) and optionally ``split`` (train, valid, test; also
val, validation), matched case-insensitively; other columns are ignored. E.g. ``audio/dog1.wav,dog;outdoor,train``.

A clip with several labels makes the dataset multi-label (tagging), else it is single-label (classification).
Without a split column the clips are split 60/20/20 by a seed: stratified per class for classification.
Malformed rows are skipped and recorded with their line, so one bad row never costs the dataset; only a missing
or unusable labels.csv is fatal. A row naming a file that does not exist is kept: store preparation skips the
clip, and inspection (audiofolder_inspect.py) lists it. Nothing here decodes audio.

In Hugging Face's layout the split folders the tree has are the split; those it lacks are cut from train (all
three, 60/20/20, without split folders), seeded, stratified for classification. A metadata row naming a file
that does not exist is skipped there, with its file and line.
"""
from __future__ import annotations

import csv
import io
import posixpath
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audio2image.datasets.hf_layout import (AUDIO_EXTENSIONS, DEFAULT_LABEL_COLUMN, Layout, describe,
                                            read_layout, split_words)
from audio2image.datasets.splits import SPLITS, complete_splits
from audio2image.datasets.textfiles import next_row, read_utf8
from audio2image.util import DatasetError

LABELS_FILE = "labels.csv"
SEPARATOR = ";"
SPLIT_VALUES = {"train": "train", "valid": "valid", "val": "valid", "validation": "valid", "test": "test"}
TASKS = ("auto", "tagging", "classification")

_LAYOUT = ("an audio folder is ROOT/labels.csv with the header 'path,labels' (optionally ',split') and one row "
           "per clip, e.g. 'audio/dog1.wav,dog;outdoor', paths relative to ROOT, labels separated by ';' (or a "
           "folder in Hugging Face's AudioFolder layout)")
_SPLIT_CHOICES = "train, valid, test (also accepted: val, validation)"


@dataclass(frozen=True)
class Clip:
    path: str  # relative to root, posix, normalised (posixpath.normpath)
    labels: tuple[str, ...]  # in file order, de-duplicated, stripped, never empty
    split: str | None  # "train" | "valid" | "test", or None when the file has no split column
    line: int  # line in labels.csv (or the metadata file) where the row starts (header = line 1); 0: no row
    file: str = ""  # Hugging Face layout: the metadata file of the row, relative to root; "": labels.csv, or none


@dataclass
class LabelsFile:
    path: Path  # labels.csv; in Hugging Face's layout, ROOT
    clips: list[Clip]
    vocabulary: list[str]  # every label, sorted (label index = position)
    has_split: bool
    problems: list[dict] = field(default_factory=list)  # rows skipped: {"line": n, "reason": "..."}
    extra_columns: list[str] = field(default_factory=list)  # header columns other than path/labels/split
    hf: Layout | None = None  # the tree as read in Hugging Face's layout; None: a labels.csv

    @property
    def multi_label(self) -> bool:
        return any(len(clip.labels) > 1 for clip in self.clips)

    @property
    def given(self) -> tuple[str, ...]:
        """The splits the data brings (a split column, or split folders holding items), in SPLITS order."""
        if self.hf is not None:
            return tuple(self.hf.parts) if self.hf.folders else ()
        return SPLITS if self.has_split else ()

    def place(self, clip: Clip) -> str:
        """Where a clip was named, for messages: a file and line, or (labelled by its folder) the clip's file."""
        if self.hf is None:
            return f"{self.path}: line {clip.line}"
        return f"{self.path / clip.file}: line {clip.line}" if clip.file else str(self.path / clip.path)


class _Skip(Exception):
    """A data row that cannot be used; the message is the reason recorded in `problems`."""


# ----------------------------------------------------------------------------- reading


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise DatasetError(f"{path} does not exist; {_LAYOUT}.")
    return read_utf8(path)


def _columns(path: Path, header: list[str], line: int) -> tuple[dict[str, int], list[str]]:
    """Positions of path, labels and (if present) split, and the names of the other columns."""
    names = [name.strip().lower() for name in header]
    for required in ("path", "labels"):
        if required not in names:
            found = ", ".join(repr(name.strip()) for name in header)
            raise DatasetError(f"{path}: line {line}: the header has no '{required}' column (found {found}); "
                               f"{_LAYOUT}.")
    repeated = sorted({name for name in names if name and names.count(name) > 1})
    if repeated:
        raise DatasetError(f"{path}: line {line}: the header repeats column(s) {', '.join(map(repr, repeated))}; "
                           "keep one of each.")
    positions = {name: names.index(name) for name in ("path", "labels", "split") if name in names}
    extra = [header[i].strip() or f"(unnamed column {i + 1})" for i, name in enumerate(names)
             if name not in positions]
    return positions, extra


def _clip_path(raw: str) -> str:
    path = raw.strip()
    if not path:
        raise _Skip("path is empty")
    if posixpath.isabs(path):
        raise _Skip(f"path {path!r} is absolute; give it relative to ROOT")
    normal = posixpath.normpath(path)
    if normal == ".." or normal.startswith("../"):
        raise _Skip(f"path {path!r} leaves ROOT (through '..')")
    if normal == ".":
        raise _Skip(f"path {path!r} is ROOT itself, not a file")
    return normal


def _clip_labels(raw: str) -> tuple[str, ...]:
    # dict.fromkeys de-duplicates in file order; empty pieces ("a;;b", a trailing ";") are dropped silently.
    labels = tuple(dict.fromkeys(piece.strip() for piece in raw.split(SEPARATOR) if piece.strip()))
    if not labels:
        raise _Skip("no labels" + (f" (the labels field is {raw.strip()!r})" if raw.strip() else ""))
    return labels


def _clip_split(raw: str) -> str:
    value = raw.strip()
    if not value:
        raise _Skip(f"split is empty; expected one of {_SPLIT_CHOICES}")
    if value.lower() not in SPLIT_VALUES:
        raise _Skip(f"split {value!r} is not one of {_SPLIT_CHOICES}")
    return SPLIT_VALUES[value.lower()]


def _parse_row(row: list[str], width: int, columns: dict[str, int], kept: dict[str, int],
               lines: tuple[int, int]) -> tuple[str, tuple[str, ...], str | None]:
    """(path, labels, split) of one data row; _Skip with the reason when it cannot be used."""
    start, end = lines
    if len(row) != width:
        spans = f" (the row runs from line {start} to {end}: a quote left open?)" if end > start else ""
        raise _Skip(f"expected {width} fields, found {len(row)}{spans}")
    fields = [row[columns[name]] for name in columns]
    if end > start and any("\n" in value or "\r" in value for value in fields):
        raise _Skip(f"a field runs from line {start} to {end} (a quote left open?)")
    path = _clip_path(row[columns["path"]])
    if path in kept:
        raise _Skip(f"duplicated path, first on line {kept[path]}")
    labels = _clip_labels(row[columns["labels"]])
    split = _clip_split(row[columns["split"]]) if "split" in columns else None
    return path, labels, split


def read_labels(root: Path, label_column: str = DEFAULT_LABEL_COLUMN) -> LabelsFile:
    """Read ROOT/labels.csv, or without one the folder in Hugging Face's layout with its labels in `label_column`
    (see the module docstring); bad rows are skipped and listed in `problems`."""
    root = Path(root)
    if root.is_dir() and not (root / LABELS_FILE).exists():
        layout = read_layout(root, "AudioFolder", AUDIO_EXTENSIONS, label_column, "audio_label_column",
                             elsewise=f"or a {LABELS_FILE} (columns path and labels)")
        clips = [Clip(row.path, row.labels, split, row.line, row.file) for split, rows in layout.parts.items()
                 for row in rows]
        return LabelsFile(path=root, clips=clips, vocabulary=sorted({label for clip in clips for label in clip.labels}),
                          has_split=False, problems=layout.problems, hf=layout)
    if label_column != DEFAULT_LABEL_COLUMN:
        raise DatasetError(f"{root / LABELS_FILE} gives the labels in its 'labels' column; audio_label_column "
                           f"({label_column!r}) names the label column of Hugging Face metadata files: leave it at "
                           f"{DEFAULT_LABEL_COLUMN!r}.")
    return _read_labels_csv(root / LABELS_FILE)


def _read_labels_csv(path: Path) -> LabelsFile:
    reader = csv.reader(io.StringIO(_read_text(path), newline=""))
    header, header_line = next_row(path, reader)
    if header is None:
        raise DatasetError(f"{path}: line 1: the file is empty; {_LAYOUT}.")
    columns, extra = _columns(path, header, header_line)
    clips, problems, kept = [], [], {}  # kept: path -> line of the row that holds it
    while True:
        row, start = next_row(path, reader)
        if row is None:
            break
        try:
            clip_path, labels, split = _parse_row(row, len(header), columns, kept, (start, reader.line_num))
        except _Skip as skip:
            problems.append({"line": start, "reason": str(skip)})
            continue
        # Only kept rows claim their path: a duplicate of a skipped row is the first usable one, so it is kept.
        kept[clip_path] = start
        clips.append(Clip(clip_path, labels, split, start))
    vocabulary = sorted({label for clip in clips for label in clip.labels})
    return LabelsFile(path=path, clips=clips, vocabulary=vocabulary, has_split="split" in columns,
                      problems=problems, extra_columns=extra)


# ----------------------------------------------------------------------------- task, splits and targets


def task_of(labels: LabelsFile, requested: str = "auto") -> str:
    """"tagging" or "classification" for `requested` (one of TASKS); auto is tagging when any clip has several
    labels. Classification of multi-label data is a DatasetError naming the first such clip's line."""
    if requested not in TASKS:
        raise ValueError(f"unknown task {requested!r}; choose one of {', '.join(TASKS)}")
    multi = next((clip for clip in labels.clips if len(clip.labels) > 1), None)
    if requested == "tagging" or (requested == "auto" and multi is not None):
        return "tagging"
    if multi is not None:
        raise DatasetError(
            f"{labels.place(multi)}: {multi.path!r} has {len(multi.labels)} labels "
            f"({SEPARATOR.join(multi.labels)}), but classification needs exactly one per clip; use task "
            "'tagging' (or 'auto'), or give every clip one label.")
    return "classification"


def assign_splits(labels: LabelsFile, task: str, seed: int) -> dict[str, list[Clip]]:
    """Clips per split name, from the split column or folders, the rest seeded; a split may be empty (see
    empty_split_error)."""
    clips = labels.clips
    if labels.has_split:
        return {name: [clip for clip in clips if clip.split == name] for name in SPLITS}
    strata = None
    if task == "classification":
        index = {label: i for i, label in enumerate(labels.vocabulary)}
        strata = np.array([index[c.labels[0]] for c in clips], dtype=np.int64)
    # Multi-label data cannot be stratified simply (a clip is in several classes at once; that would need
    # iterative stratification), so tagging gets a plain seeded split (strata None).
    given = {name: np.array([i for i, clip in enumerate(clips) if clip.split == name], dtype=np.int64)
             for name in labels.given} or {"train": np.arange(len(clips), dtype=np.int64)}
    positions = complete_splits(given, seed, strata)
    # Positions are sorted, so every split keeps file order.
    return {name: [clips[i] for i in positions[name]] for name in SPLITS}


def empty_split_error(labels: LabelsFile, parts: dict[str, list[Clip]]) -> str | None:
    """What to tell the user when a split is empty, or None."""
    empty = [name for name in SPLITS if not parts[name]]
    if not empty:
        return None
    if labels.has_split:
        return (f"{labels.path} has no clip with split {' or '.join(map(repr, empty))}; give each of train, "
                "valid and test at least one row, or drop the split column for a seeded 60/20/20 split.")
    if labels.given:
        return (f"{labels.path}: {split_words(labels.hf.folders, set(labels.given))} leaves "
                f"{' and '.join(map(repr, empty))} empty; add clips.")
    return (f"{labels.path}: the seeded 60/20/20 split of {len(labels.clips)} clips leaves "
            f"{' and '.join(map(repr, empty))} empty; add clips, or "
            + ("split folders." if labels.hf is not None else "a split column."))


def check_teachable(labels: LabelsFile, task: str) -> None:
    """Refuse rows that cannot teach `task` (resolved), whatever their files hold: a single label for
    classification (as an image folder with a single class folder is refused), and for tagging no tag that varies
    (every tag on every clip). Either would train to a loss of zero and teach nothing."""
    if task == "classification" and len(labels.vocabulary) == 1:
        raise DatasetError(f"audio folder {labels.path} has only the label {labels.vocabulary[0]!r}, but "
                           "classification needs at least two classes; add clips of another label.")
    if task != "tagging" or not labels.clips:
        return
    counts = Counter(label for clip in labels.clips for label in clip.labels)
    if all(count == len(labels.clips) for count in counts.values()):
        raise DatasetError(f"audio folder {labels.path}: no tag varies, as every clip has every tag "
                           f"({', '.join(map(repr, labels.vocabulary))}), so tagging has nothing to learn; add "
                           "clips that lack one of them or have other tags.")


def split_clips(labels: LabelsFile, task: str, seed: int) -> dict[str, list[Clip]]:
    """Clips per split name in SPLITS, file order kept: from the split column, else seeded 60/20/20 (stratified
    per class for classification). Depends only on the rows and the seed; an empty split, or rows that cannot teach
    the task (`check_teachable`), is a DatasetError."""
    task = task_of(labels, task)
    check_teachable(labels, task)
    parts = assign_splits(labels, task, seed)
    error = empty_split_error(labels, parts)
    if error:
        raise DatasetError(error)
    return parts


def layout_words(labels: LabelsFile) -> str:
    """How the folder was read, in words (inspection and the store's manifest say it)."""
    return describe(labels.hf) if labels.hf is not None else LABELS_FILE


def split_protocol(labels: LabelsFile) -> str:
    """Where the split comes from, in words: "column", "seeded", or the split folders and what is cut from train."""
    if labels.has_split:
        return "column"
    if labels.hf is not None and labels.hf.folders:
        return split_words(labels.hf.folders, set(labels.given))
    return "seeded"


def count_audiofolder(root: Path, *, split_seed: int = 0, task: str = "auto",
                      label_column: str = DEFAULT_LABEL_COLUMN, **_) -> dict:
    """What a store of the audio folder at `root` will hold, from labels.csv (or the metadata or folders) alone,
    nothing decoded: {"splits": {split: clips}, "labels": label names}. The registry's `count`."""
    labels = read_labels(Path(root), label_column)
    parts = split_clips(labels, task, split_seed)
    return {"splits": {name: len(clips) for name, clips in parts.items()}, "labels": len(labels.vocabulary)}


def targets(clips: list[Clip], vocabulary: list[str], task: str) -> np.ndarray:
    """int64 [n] class indices (classification) or uint8 [n, len(vocabulary)] 0/1 (tagging)."""
    column = {label: j for j, label in enumerate(vocabulary)}  # a label outside it is a KeyError: a caller's bug
    if task == "classification":
        multi = next((clip for clip in clips if len(clip.labels) > 1), None)
        if multi is not None:
            raise ValueError(f"line {multi.line}: {multi.path!r} has several labels; classification needs one")
        return np.array([column[clip.labels[0]] for clip in clips], dtype=np.int64)
    if task == "tagging":
        matrix = np.zeros((len(clips), len(vocabulary)), dtype=np.uint8)
        for i, clip in enumerate(clips):
            matrix[i, [column[label] for label in clip.labels]] = 1
        return matrix
    raise ValueError(f"task must be 'tagging' or 'classification' (resolve 'auto' with task_of), got {task!r}")
