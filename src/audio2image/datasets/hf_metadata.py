"""One Hugging Face metadata file (``metadata.csv`` or ``metadata.jsonl``) read into rows: the file each row names
(``file_name``, relative to the metadata file's own folder) and its labels (one column, ``label`` unless told).

    >>> rows, problems = read_metadata(root, "train/metadata.jsonl", "label", "audio_label_column")

A label is a JSON list (a jsonl value, or a CSV cell holding one: ``["dog", "outdoor"]``), a text of labels joined
by ``;`` (``dog;outdoor``), or one label; numbers are read as their text (``3``). Each label is stripped; repeats
and empty pieces are dropped. A row that cannot be used (a line that is not JSON, a file_name that is empty,
absolute, a URL or leaves the metadata file's folder, a file that does not exist, no label) is skipped and listed
with its file and line, as Hugging Face's `datasets` would fail on the whole set or yield the row unusable. A
metadata file without a ``file_name`` or label column is a DatasetError naming the file, the columns it has and the
key that chooses the label column.
"""
from __future__ import annotations

import csv
import io
import json
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

from audio2image.datasets.textfiles import next_row, read_utf8
from audio2image.util import DatasetError

FILE_COLUMN = "file_name"
SEPARATOR = ";"


@dataclass(frozen=True)
class Row:
    path: str  # the file it names, relative to root, posix, normalised
    labels: tuple[str, ...]  # in the order given, de-duplicated, stripped, never empty
    file: str  # the metadata file, relative to root
    line: int  # where the row starts in it (a CSV header is line 1)


class Skip(Exception):
    """A row that cannot be used; the message is the reason recorded with its file and line."""


def parse_labels(value) -> tuple[str, ...]:
    """The labels of one metadata value: a list, a JSON list in text, a ';'-joined text or one label or number."""
    if value is None:
        raise Skip("empty label (null)")
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                raise Skip(f"the label {text!r} starts like a JSON list but is not one") from None
        else:
            value = text.split(SEPARATOR)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list):
        raise Skip(f"the label {value!r} is not text, a number or a list of them")
    pieces = []
    for piece in value:
        if isinstance(piece, bool) or not isinstance(piece, (str, int, float)):
            raise Skip(f"the label list holds {piece!r}, which is not text or a number")
        pieces.append(str(piece).strip())
    labels = tuple(dict.fromkeys(piece for piece in pieces if piece))
    if not labels:
        raise Skip("empty label" + (f" ({value!r})" if value not in ([], [""]) else ""))
    return labels


def _file_path(root: Path, folder: str, raw) -> str:
    """The path (relative to root) of the file a row names, relative to its metadata file's `folder`."""
    if raw is None or raw == "":
        raise Skip(f"{FILE_COLUMN} is empty")
    if not isinstance(raw, str):
        raise Skip(f"{FILE_COLUMN} {raw!r} is not text")
    if not raw.strip():
        raise Skip(f"{FILE_COLUMN} {raw!r} is blank")
    name = raw.strip()
    if "://" in name:
        raise Skip(f"{FILE_COLUMN} {name!r} is a URL; give a path relative to the metadata file's folder")
    normal = posixpath.normpath(name.replace("\\", "/"))
    if posixpath.isabs(normal) or normal == ".." or normal.startswith("../"):
        where = f"{folder}/" if folder else "ROOT"
        raise Skip(f"{FILE_COLUMN} {name!r} leaves the metadata file's folder ({where}); name files inside it")
    path = posixpath.normpath(posixpath.join(folder, normal)) if folder else normal
    if not os.path.isfile(root / path):
        raise Skip(f"missing file {path}")
    return path


def _missing_column(path: Path, column: str, found: list[str], key: str) -> DatasetError:
    listed = ", ".join(repr(name) for name in found) or "none"
    if column == FILE_COLUMN:
        return DatasetError(f"{path}: no '{FILE_COLUMN}' column (found {listed}); a metadata file names each file in "
                            f"a '{FILE_COLUMN}' column, relative to the metadata file's folder.")
    return DatasetError(f"{path}: no label column '{column}' (found {listed}); name the column that holds the "
                        f"labels with {key}=COLUMN.")


def _csv_rows(path: Path, label_column: str, key: str):
    """(line, file_name, label, error) per data row of a metadata.csv; error: why the row is unusable, or None."""
    reader = csv.reader(io.StringIO(read_utf8(path), newline=""))
    header, line = next_row(path, reader)
    if header is None:
        raise DatasetError(f"{path}: line 1: the file is empty; a metadata.csv starts with a header naming its "
                           f"columns ('{FILE_COLUMN},{label_column}').")
    names = [name.strip() for name in header]
    for column in (FILE_COLUMN, label_column):
        if column not in names:
            raise _missing_column(path, column, names, key)
    file_at, label_at = names.index(FILE_COLUMN), names.index(label_column)
    while True:
        row, start = next_row(path, reader)
        if row is None:
            return
        if len(row) != len(header):
            spans = f" (the row runs to line {reader.line_num}: a quote left open?)" if reader.line_num > start else ""
            yield start, None, None, f"expected {len(header)} fields, found {len(row)}{spans}"
        else:
            yield start, row[file_at], row[label_at], None


def _jsonl_rows(path: Path, label_column: str, key: str):
    """(line, file_name, label, error) per non-blank line of a metadata.jsonl."""
    rows, columns = [], {}
    for number, text in enumerate(read_utf8(path).splitlines(), start=1):
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            rows.append((number, None, None, f"unreadable JSON line ({error.msg} at column {error.colno})"))
            continue
        if not isinstance(value, dict):
            rows.append((number, None, None, f"a JSON {type(value).__name__}, not an object"))
            continue
        columns.update(dict.fromkeys(value))
        missing = label_column not in value
        rows.append((number, value.get(FILE_COLUMN), value.get(label_column),
                     f"no '{label_column}'" if missing else None))
    for column in (FILE_COLUMN, label_column):
        if columns and column not in columns:
            raise _missing_column(path, column, list(columns), key)
    yield from rows


def read_metadata(root: Path, relative: str, label_column: str, key: str,
                  seen: dict[str, str] | None = None) -> tuple[list[Row], list[dict]]:
    """The usable rows of the metadata file `relative` (to root) and the skipped ones ({"file", "line", "reason"}).
    `seen`: path -> where a row first named it, shared by the metadata files of one dataset (a file named twice is
    kept once); `key`: the config key that chooses `label_column`, for messages."""
    root, seen = Path(root), {} if seen is None else seen
    path, folder = root / relative, posixpath.dirname(relative)
    reading = _jsonl_rows if relative.endswith(".jsonl") else _csv_rows
    rows, problems = [], []
    for line, raw_file, raw_label, error in reading(path, label_column, key):
        try:
            if error:
                raise Skip(error)
            file = _file_path(root, folder, raw_file)
            if file in seen:
                raise Skip(f"{file} is named again (first in {seen[file]})")
            labels = parse_labels(raw_label)
        except Skip as skip:
            problems.append({"file": relative, "line": line, "reason": str(skip)})
            continue
        seen[file] = f"{relative} line {line}"  # only kept rows claim a file: a later usable row is then kept
        rows.append(Row(file, labels, relative, line))
    return rows, problems
