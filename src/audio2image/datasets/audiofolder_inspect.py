"""Inspecting an audio folder (``audio2image inspect audiofolder ROOT``): its labels.csv, or its Hugging Face
layout, as read (which layout, bad rows with their files and lines, files not read), the task it implies, the split, which named files are missing or empty, and, unless told not to,
every present file's header read by soundfile (duration, sample rate, channels, format; unreadable files named).

    >>> print(format_audiofolder_inspection(inspect_audiofolder(Path("~/sounds"), workers=2)))
"""
from __future__ import annotations

import os
import posixpath
import stat
import statistics
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from audio2image.datasets.audiofolder import (Clip, LabelsFile, assign_splits, empty_split_error, read_labels,
                                              task_of)
from audio2image.datasets.hf_layout import DEFAULT_LABEL_COLUMN, describe, split_words
from audio2image.datasets.inspection import capped, capped_lines, row_place
from audio2image.datasets.splits import SPLITS


def _check_files(root: Path, clips: list[Clip]) -> tuple[list[str], list[str], list[str]]:
    """Paths that are missing (no regular file there), zero bytes, and present (stat only, no decoding)."""
    missing, empty, present = [], [], []
    for clip in clips:
        try:
            info = os.stat(root / clip.path)
        except OSError:
            info = None
        if info is None or not stat.S_ISREG(info.st_mode):  # a folder there is as unusable as nothing
            missing.append(clip.path)
        elif info.st_size == 0:
            empty.append(clip.path)
        else:
            present.append(clip.path)
    return missing, empty, present


def probe_audio(path: str) -> tuple[dict | None, str | None]:
    """({seconds, samplerate, channels, format}, None) from the file's header, or (None, reason)."""
    import soundfile  # only inspection and preparation decode; reading labels.csv must not need libsndfile

    try:
        info = soundfile.info(path)
    except Exception as error:  # any failure to open is a finding about the file, not a crash
        return None, getattr(error, "error_string", None) or f"{type(error).__name__}: {error}"
    if info.samplerate <= 0 or info.frames <= 0:
        return None, f"no audio frames ({info.frames} frames at {info.samplerate} Hz)"
    return {"seconds": info.frames / info.samplerate, "samplerate": info.samplerate,
            "channels": info.channels, "format": info.format}, None


def _probe_all(paths: list[str], workers: int) -> list[tuple[dict | None, str | None]]:
    if workers <= 1:
        return [probe_audio(path) for path in paths]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(probe_audio, paths, chunksize=32))


def _stats(values: list) -> dict | None:
    if not values:
        return None
    return {"min": round(min(values), 3), "median": round(statistics.median(values), 3), "max": round(max(values), 3)}


def _counted(values) -> dict[str, int]:
    return {str(key): count for key, count in sorted(Counter(values).items())}


def _decode_report(root: Path, paths: list[str], workers: int) -> dict:
    results = _probe_all([str(root / path) for path in paths], workers)
    good = [(path, info) for path, (info, _) in zip(paths, results) if info is not None]
    by_length = sorted(good, key=lambda item: (item[1]["seconds"], item[0]))
    return {
        "opened": len(good),
        # What a user needs to choose the fixed clip length (shorter clips are padded, longer ones cropped).
        "duration_seconds": _stats([info["seconds"] for _, info in by_length]),
        "shortest": by_length[0][0] if good else None,
        "longest": by_length[-1][0] if good else None,
        "sample_rates": _counted(info["samplerate"] for _, info in good),
        "channels": _counted(info["channels"] for _, info in good),
        "formats": _counted(info["format"] for _, info in good),
        "unreadable": capped([{"path": path, "reason": reason}
                               for path, (_, reason) in zip(paths, results) if reason is not None]),
    }


def _task_report(labels: LabelsFile) -> dict:
    multi = [clip for clip in labels.clips if len(clip.labels) > 1]
    if multi:
        return {"auto": "tagging", "why": f"{len(multi)} of {len(labels.clips)} clips have more than one label "
                                          f"(the first {_where(labels, multi[0])})"}
    if not labels.clips:
        return {"auto": "classification", "why": "there is no usable clip"}
    few = " (but one label in all: a classifier needs two)" if len(labels.vocabulary) < 2 else ""
    return {"auto": "classification", "why": "every clip has exactly one label" + few}


def _where(labels: LabelsFile, clip: Clip) -> str:
    return f"on line {clip.line}" if labels.hf is None else f"in {labels.place(clip)}"


def _split_report(labels: LabelsFile, task: str) -> dict:
    # Seeded split sizes depend only on the class sizes (or the clip count), never on the seed, so seed 0's
    # counts are every seed's; which labels a split lacks can differ by seed for tagging.
    parts = assign_splits(labels, task, seed=0)
    absent = {}
    for name in SPLITS:
        present = {label for clip in parts[name] for label in clip.labels}
        absent[name] = [label for label in labels.vocabulary if label not in present]
    source = "column" if labels.has_split else "seeded at preparation"
    if labels.hf is not None and labels.hf.folders:
        source = split_words(labels.hf.folders, set(labels.given))
    return {"source": source, "seeded": not labels.has_split and len(labels.given) < len(SPLITS),
            "counts": {name: len(parts[name]) for name in SPLITS}, "error": empty_split_error(labels, parts),
            "labels_absent": {name: capped(missing) for name, missing in absent.items()}}


def inspect_audiofolder(root: Path, decode: bool = True, workers: int = 1,
                        label_column: str = DEFAULT_LABEL_COLUMN) -> dict:
    """Check an audio folder: labels.csv's rows (or its Hugging Face layout's) and labels, the task and split it
    gives, the files it names (stat only) and, with decode, each file's header; returns a JSON-serialisable
    report."""
    root = Path(root)
    labels = read_labels(root, label_column)
    hf = labels.hf
    task = task_of(labels, "auto")
    counts = Counter(label for clip in labels.clips for label in clip.labels)
    missing, empty, present = _check_files(root, labels.clips)
    report = {
        "root": str(root),
        "labels_file": str(labels.path) if hf is None else None,
        "layout": describe(hf) if hf is not None else f"{labels.path.name} (path, labels"
                  + (", split)" if labels.has_split else ")"),
        "unread": capped(hf.unread if hf is not None else []),
        "notes": hf.notes if hf is not None else [],
        "has_split_column": labels.has_split,
        "extra_columns": labels.extra_columns,
        "clips": len(labels.clips),
        "problems": capped(labels.problems),
        "labels": [[label, count] for label, count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))],
        "labels_per_clip": _stats([len(clip.labels) for clip in labels.clips]),
        "task": _task_report(labels),
        "splits": _split_report(labels, task),
        "missing_files": capped(missing),
        "empty_files": capped(empty),
        "extensions": _counted(posixpath.splitext(clip.path)[1].lower() or "(none)" for clip in labels.clips),
        "decoded": decode,
    }
    if decode:
        report["audio"] = _decode_report(root, present, workers)
    return report


def _format_audio(audio: dict) -> list[str]:
    seconds = audio["duration_seconds"]
    lines = [f"audio headers read: {audio['opened']} files"]
    if seconds:  # the numbers to choose the fixed clip length from
        lines.append("duration (s): min {min}, median {median}, max {max}".format(**seconds)
                     + f" (shortest {audio['shortest']}, longest {audio['longest']})")
    for title, key in (("sample rates (Hz)", "sample_rates"), ("channels", "channels"), ("formats", "formats")):
        lines.append(f"{title}: " + (", ".join(f"{value} x{n}" for value, n in audio[key].items()) or "none"))
    lines += capped_lines("files soundfile cannot open (skipped at preparation)", audio["unreadable"],
                            lambda item: f"{item['path']}: {item['reason']}")
    return lines


def format_audiofolder_inspection(report: dict) -> str:
    """Human-readable text of an `inspect_audiofolder` report."""
    splits, task = report["splits"], report["task"]
    lines = [f"audio folder at {report['root']}", f"layout: {report['layout']}"]
    if report["labels_file"]:
        lines.append(f"labels: {report['labels_file']} ({report['clips']} clips, {len(report['labels'])} labels, "
                     f"split column: {'yes' if report['has_split_column'] else 'no'})")
    else:
        lines.append(f"{report['clips']} clips, {len(report['labels'])} labels")
    if report["extra_columns"]:
        lines.append(f"columns ignored: {', '.join(report['extra_columns'])}")
    lines += capped_lines("rows skipped", report["problems"], lambda p: f"{row_place(p)}: {p['reason']}")
    if report["unread"]["count"]:
        lines += capped_lines("files and folders not read", report["unread"],
                              lambda entry: f"{entry['path']}: {entry['reason']}")
    lines += [f"note: {note}" for note in report["notes"]]
    lines.append(f"task (auto): {task['auto']}, because {task['why']}")
    if report["labels_per_clip"]:
        lines.append("labels per clip: {min} min, {median} median, {max} max".format(**report["labels_per_clip"]))
    counts = " / ".join(f"{name} {n}" for name, n in splits["counts"].items())
    seeded = splits["seeded"]
    source = {"column": "from the split column"}.get(splits["source"], splits["source"])
    lines.append(f"splits: {counts} ({source})")
    if splits["error"]:
        lines.append(f"  unusable: {splits['error']}")
    for name, absent in splits["labels_absent"].items():
        more = ", ..." if absent["count"] > len(absent["examples"]) else ""
        if absent["count"]:
            lines.append(f"  labels with no {name} clip{' (seed 0)' if seeded else ''}: {absent['count']} "
                         f"({', '.join(absent['examples'])}{more})")
    lines += capped_lines("missing files (skipped at preparation)", report["missing_files"])
    lines += capped_lines("empty files (skipped at preparation)", report["empty_files"])
    lines.append("file extensions: " + (", ".join(f"{ext} x{n}" for ext, n in report["extensions"].items()) or "none"))
    lines += _format_audio(report["audio"]) if report["decoded"] else ["audio not decoded (decode=False)"]
    width = max([24, *(len(label) + 1 for label, _ in report["labels"][:50])])
    lines.append("clips per label:")
    lines += [f"  {label:<{width}} {count:>6}" for label, count in report["labels"][:50]]
    if len(report["labels"]) > 50:
        lines.append(f"  ... and {len(report['labels']) - 50} more")
    return "\n".join(lines)
