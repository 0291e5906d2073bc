"""MagnaTagATune metadata: read the annotations, split them, build label matrices, inspect a copy.

Nothing here decodes audio; this module only needs the annotation file and the file tree.

`annotations_final.csv` is tab-separated with a header naming `clip_id`, the 188 tag columns
and `mp3_path`; fields may be double-quoted (the real file quotes every field). Columns are
mapped by name, never by position, so a file with its columns in another order reads the same.

Tag names are canonicalised to the spelling in `tags.ALL_TAGS` when they differ only in
whitespace: the real header spells two tags with runs of spaces ("no   singing", "no   voices"),
while other copies of the metadata (e.g. jukemir's) collapse them to one space. Both spellings
must give the same label.

Split protocols (folders are the first component of `mp3_path`; they group clips by album):

- ``standard``: train 0-9,a,b / valid c / test d,e,f, only clips with at least one top-50 tag
  (the usual benchmark protocol: 15,247 / 1,529 / 4,332 on the real data);
- ``full``: the same folders, every clip (18,706 / 1,825 / 5,329);
- ``original``: the seed experiment's train 0-b / valid c,d / test e,f, every clip (18,706 / 3,502 / 3,652).

Every protocol drops the three known-unusable clips in `BAD_CLIPS`.
"""
from __future__ import annotations

import csv
import os
from collections import Counter
from dataclasses import dataclass, field
from itertools import compress
from operator import itemgetter
from pathlib import Path

import numpy as np

from audio2image.datasets.inspection import capped, capped_lines
from audio2image.datasets.splits import SPLITS
from audio2image.datasets.tags import ALL_TAGS, TOP50
from audio2image.errors import UserError

# clip_id -> mp3_path of the clips whose audio is empty or corrupt in the real download.
BAD_CLIPS: dict[int, str] = {
    35644: "6/norine_braun-now_and_zen-08-gently-117-146.mp3",
    55753: "8/jacob_heringman-josquin_des_prez_lute_settings-19-gintzler__pater_noster-204-233.mp3",
    57881: "9/american_baroque-dances_and_suites_of_rameau_and_couperin-25-le_petit_rien_xiveme_ordre_couperin-88-117.mp3",
}

SPLIT_PROTOCOLS = ("standard", "full", "original")

# Folder -> split for each protocol.
_FOLDERS = {
    "standard": {"train": "0123456789ab", "valid": "c", "test": "def"},
    "full": {"train": "0123456789ab", "valid": "c", "test": "def"},
    "original": {"train": "0123456789ab", "valid": "cd", "test": "ef"},
}

_GET_DATA = "get the data with `audio2image download mtat DIR` or `audio2image synth mtat DIR`"


class AnnotationError(UserError, ValueError):
    """The annotation file cannot be used at all (its header is unusable)."""


@dataclass(frozen=True)
class Clip:
    clip_id: int
    mp3_path: str  # relative to ROOT/mp3, e.g. "f/artist-album-01-title-30-59.mp3"
    tags: frozenset[str]  # all of its tags, spelled as in tags.ALL_TAGS

    @property
    def folder(self) -> str:
        return self.mp3_path.split("/", 1)[0]


@dataclass
class Annotations:
    clips: list[Clip]
    tag_names: list[str]  # the tag columns as read (header spelling, file order)
    problems: list[dict] = field(default_factory=list)  # skipped rows: {"line": n, "reason": "..."}


def _squash(name: str) -> str:
    return " ".join(name.split())


_CANONICAL = {_squash(tag): tag for tag in ALL_TAGS}


def canonical_tag(name: str) -> str:
    """The tags.ALL_TAGS spelling of `name` if it differs only in whitespace, else `name` unchanged."""
    return _CANONICAL.get(_squash(name), name)


# ----------------------------------------------------------------------------- reading


def _header_columns(path: Path, header: list[str]) -> tuple[int, int, list[int], list[str]]:
    """Positions of clip_id, mp3_path and the tag columns; AnnotationError if the header is unusable."""
    names = [name.strip() for name in header]
    for required in ("clip_id", "mp3_path"):
        if required not in names:
            raise AnnotationError(
                f"{path}: line 1: the header has no '{required}' column (found {len(names)} columns).")
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise AnnotationError(f"{path}: line 1: the header repeats column(s) {', '.join(map(repr, duplicated))}.")
    tag_positions = [i for i, name in enumerate(names) if name not in ("clip_id", "mp3_path")]
    return names.index("clip_id"), names.index("mp3_path"), tag_positions, [names[i] for i in tag_positions]


def _row_problem(row: list[str], width: int, id_col: int, path_col: int, values: tuple[str, ...],
                 tag_names: list[str], seen: set[int]) -> str | None:
    """Why a data row cannot be used, or None when it is fine."""
    if len(row) != width:
        return f"expected {width} fields, found {len(row)}"
    raw_id = row[id_col].strip()
    try:
        clip_id = int(raw_id)
    except ValueError:
        return f"clip_id {raw_id!r} is not an integer"
    if clip_id in seen:
        return f"clip_id {clip_id} appears more than once"
    if not row[path_col].strip():
        return "mp3_path is empty"
    if not set(values) <= {"0", "1"}:
        tag, value = next((t, v) for t, v in zip(tag_names, values) if v not in ("0", "1"))
        return f"tag {tag!r} has value {value!r}, expected 0 or 1"
    return None


def read_annotations(path: Path) -> Annotations:
    """Read `annotations_final.csv`, mapping columns by name.

    Malformed data rows (wrong field count, non-integer or repeated clip_id, a tag value other
    than 0/1, an empty mp3_path) are skipped and recorded in `problems` with their line number,
    so that one bad row never costs the whole dataset. Only an unusable header is fatal.
    """
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter="\t", quotechar='"')
        header = next(reader, None)
        if not header:
            raise AnnotationError(
                f"{path}: line 1: the file is empty, expected a header with clip_id, tags and mp3_path.")
        id_col, path_col, tag_cols, tag_names = _header_columns(path, header)
        canonical = [canonical_tag(name) for name in tag_names]
        # itemgetter pulls all tag fields in one C call, not one Python index per field (the real file has 190).
        get_tags = itemgetter(*tag_cols) if len(tag_cols) > 1 else (lambda row: tuple(row[i] for i in tag_cols))
        width = len(header)
        clips, problems, seen = [], [], set()
        for row in reader:
            if not row:  # blank line (e.g. a trailing newline): nothing to record
                continue
            values = get_tags(row) if len(row) == width else ()
            problem = _row_problem(row, width, id_col, path_col, values, tag_names, seen)
            if problem:
                problems.append({"line": reader.line_num, "reason": problem})
                continue
            clip_id = int(row[id_col])
            seen.add(clip_id)
            tags = frozenset(compress(canonical, map("1".__eq__, values)))
            clips.append(Clip(clip_id, row[path_col].strip(), tags))
    return Annotations(clips=clips, tag_names=tag_names, problems=problems)


# ----------------------------------------------------------------------------- splits and labels


def split_clips(clips: list[Clip], protocol: str, top_tags=TOP50) -> dict[str, list[Clip]]:
    """Split by folder under `protocol` (see the module docstring), keeping annotation order.

    Clips in `BAD_CLIPS` and clips outside the folders 0-f are in no split.
    """
    if protocol not in SPLIT_PROTOCOLS:
        raise ValueError(f"unknown MTAT split protocol {protocol!r}; choose one of {', '.join(SPLIT_PROTOCOLS)}")
    split_of = {folder: split for split, folders in _FOLDERS[protocol].items() for folder in folders}
    wanted = frozenset(canonical_tag(tag) for tag in top_tags)
    splits: dict[str, list[Clip]] = {name: [] for name in SPLITS}
    for clip in clips:
        split = split_of.get(clip.folder)
        if split is None or clip.clip_id in BAD_CLIPS:
            continue
        if protocol == "standard" and not clip.tags & wanted:
            continue
        splits[split].append(clip)
    return splits


def count_mtat(root: Path, *, split: str = "standard", **_) -> dict:
    """What a store of the MTAT folder at `root` will hold, from its annotations alone (nothing decoded):
    {"splits": {split: clips}, "labels": tags}. The registry's `count`; the other store options do not count."""
    parts = split_clips(read_annotations(Path(root) / "annotations_final.csv").clips, split)
    return {"splits": {name: len(clips) for name, clips in parts.items()}, "labels": len(TOP50)}


def label_matrix(clips: list[Clip], tags=TOP50) -> np.ndarray:
    """uint8 [len(clips), len(tags)]: 1 where the clip carries the tag, matched by name."""
    column = {canonical_tag(tag): j for j, tag in enumerate(tags)}
    labels = np.zeros((len(clips), len(column)), dtype=np.uint8)
    for i, clip in enumerate(clips):
        for tag in clip.tags:
            j = column.get(tag)
            if j is not None:
                labels[i, j] = 1
    return labels


def tag_ranking(clips: list[Clip]) -> list[tuple[str, int]]:
    """(tag, clips carrying it) for every tag present, most frequent first, ties by name."""
    counts = Counter(tag for clip in clips for tag in clip.tags)
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def compare_with_canonical(ranking: list[tuple[str, int]], k: int = 50) -> dict:
    """Compare the top-k of `ranking` with the canonical top-k (TOP50 for k=50, else ALL_TAGS[:k]).

    `missing`: canonical tags not in the given top-k; `extra`: given top-k tags not canonical;
    `boundary_tie`: the k-th and (k+1)-th given tags have the same count, so the given top-k
    set is not determined by frequency alone (a difference may then be a matter of tie-breaking).
    """
    canonical = list(TOP50) if k == 50 else list(ALL_TAGS[:k])
    given = [canonical_tag(tag) for tag, _ in ranking[:k]]
    tie = len(ranking) > k and ranking[k - 1][1] == ranking[k][1]
    return {
        "k": k,
        "missing": [tag for tag in canonical if tag not in set(given)],
        "extra": [tag for tag in given if tag not in set(canonical)],
        "boundary_tie": bool(tie),
    }


# ----------------------------------------------------------------------------- inspection


def _check_files(mp3_dir: Path, clips: list[Clip]) -> tuple[list[str], list[str]]:
    """mp3 paths that are missing and that are zero bytes (stat only, no decoding)."""
    missing, empty = [], []
    for clip in clips:
        try:
            size = os.stat(mp3_dir / clip.mp3_path).st_size
        except FileNotFoundError:
            missing.append(clip.mp3_path)
            continue
        if size == 0:
            empty.append(clip.mp3_path)
    return missing, empty


def inspect_mtat(root: Path) -> dict:
    """Check a local MTAT copy without decoding audio; returns a JSON-serialisable report."""
    root = Path(root)
    annotations_path = root / "annotations_final.csv"
    if not root.is_dir():
        raise FileNotFoundError(f"MTAT root {root} does not exist; {_GET_DATA}.")
    if not annotations_path.is_file():
        raise FileNotFoundError(f"MTAT annotations {annotations_path} do not exist; {_GET_DATA}.")
    annotations = read_annotations(annotations_path)
    clips = annotations.clips
    mp3_dir = root / "mp3"
    missing, empty = _check_files(mp3_dir, clips)
    ranking = tag_ranking(clips)
    listed = {clip.clip_id for clip in clips}
    known_tags = set(ALL_TAGS)
    return {
        "root": str(root),
        "annotations": str(annotations_path),
        "clip_info_present": (root / "clip_info_final.csv").is_file(),
        "mp3_dir_present": mp3_dir.is_dir(),
        "clips": len(clips),
        "tag_columns": len(annotations.tag_names),
        "unknown_tag_columns": [t for t in annotations.tag_names if canonical_tag(t) not in known_tags],
        "problems": capped(annotations.problems),
        "missing_files": capped(missing),
        "empty_files": capped(empty),
        "bad_clips_listed": sorted(cid for cid in BAD_CLIPS if cid in listed),
        "splits": {p: {s: len(c) for s, c in split_clips(clips, p).items()} for p in SPLIT_PROTOCOLS},
        "top50_canonical": list(TOP50),
        "top50_given": [[tag, count] for tag, count in ranking[:50]],
        "top50_difference": compare_with_canonical(ranking, 50),
    }


def format_mtat_inspection(report: dict) -> str:
    """Human-readable text of an `inspect_mtat` report."""
    lines = [
        f"MTAT at {report['root']}",
        f"annotations: {report['annotations']} ({report['clips']} clips, {report['tag_columns']} tag columns)",
        f"clip_info_final.csv: {'present' if report['clip_info_present'] else 'absent'}",
        f"mp3 folder: {'present' if report['mp3_dir_present'] else 'ABSENT'}",
    ]
    if report["unknown_tag_columns"]:
        lines.append(f"tag columns outside the 188: {', '.join(report['unknown_tag_columns'])}")
    problems = report["problems"]
    lines.append(f"malformed rows skipped: {problems['count']}")
    lines += [f"  line {p['line']}: {p['reason']}" for p in problems["examples"]]
    lines += capped_lines("missing mp3 files", report["missing_files"])
    lines += capped_lines("empty mp3 files", report["empty_files"])
    lines.append(f"known-unusable clips listed (always dropped): {report['bad_clips_listed'] or 'none'}")
    lines.append("clips per split (train / valid / test):")
    for protocol, counts in report["splits"].items():
        lines.append(f"  {protocol:<9} {counts['train']:>6} / {counts['valid']:>6} / {counts['test']:>6}")
    diff = report["top50_difference"]
    if not diff["missing"] and not diff["extra"]:
        lines.append("top-50 by frequency: same set as the canonical top-50")
    else:
        lines.append("top-50 by frequency differs from the canonical top-50:")
        lines.append(f"  canonical but not in this top-50: {', '.join(diff['missing']) or 'none'}")
        lines.append(f"  in this top-50 but not canonical: {', '.join(diff['extra']) or 'none'}")
        if diff["boundary_tie"]:
            lines.append("  (tags 50 and 51 tie in count here: the difference may be tie-breaking)")
    given = ", ".join(f"{tag} ({count})" for tag, count in report["top50_given"])
    lines.append(f"this copy's top-50: {given}")
    return "\n".join(lines)
