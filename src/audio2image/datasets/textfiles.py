"""Reading the text files that describe a dataset (labels.csv, metadata.csv, metadata.jsonl): UTF-8 with the line
of the first bad byte named, and CSV rows with the line each starts on, blank rows skipped.

    >>> reader = csv.reader(io.StringIO(read_utf8(path), newline="")); header, line = next_row(path, reader)
"""
from __future__ import annotations

import csv
from pathlib import Path

from audio2image.util import DatasetError


def read_utf8(path: Path) -> str:
    """The file's text (a BOM is dropped); a DatasetError naming the line of the first byte that is not UTF-8."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise DatasetError(f"{path}: line {line}: not UTF-8 text (byte {error.start}: {error.reason}); "
                           "save the file as UTF-8 (spreadsheets: 'CSV UTF-8').") from None


def next_row(path: Path, reader) -> tuple[list[str] | None, int]:
    """The next row that is not blank and the line it starts on; (None, line) at the end.

    A row whose fields are all whitespace (",," is what spreadsheets export for an empty row) counts as blank.
    """
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader, None)
        except csv.Error as error:  # e.g. a field over csv's size limit: a quote left open swallowing the file
            raise DatasetError(f"{path}: line {start}: {error} (a quote left open?).") from None
        if row is None or any(value.strip() for value in row):
            return row, start
