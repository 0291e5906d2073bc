"""What every dataset's inspection shares: lists capped to a few named examples, per-class count statistics,
and for image datasets which files fail to decode, so that all inspections check, count and word alike.

    >>> report.update(decode_findings(root, paths, workers=2)); lines += decode_lines(report)
"""
from __future__ import annotations

import functools
import os
import statistics
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


EXAMPLES = 10  # how many missing files, bad rows or unreadable files a report lists by name


def capped(items: list, examples: int = EXAMPLES) -> dict:
    """{"count": all, "examples": the first `examples`}."""
    return {"count": len(items), "examples": items[:examples]}


def capped_lines(title: str, listed: dict, show=str) -> list[str]:
    """'title: count', the examples (each through `show`), and how many more there are."""
    lines = [f"{title}: {listed['count']}"]
    lines += [f"  {show(item)}" for item in listed["examples"]]
    if listed["count"] > len(listed["examples"]):
        lines.append(f"  ... and {listed['count'] - len(listed['examples'])} more")
    return lines


def row_place(problem: dict) -> str:
    """Where a skipped annotation row is: "line 4", or "train/metadata.csv: line 4" when it names its file."""
    return f"{problem['file']}: line {problem['line']}" if problem.get("file") else f"line {problem['line']}"


def format_problem(image, formats: tuple[str, ...] | None) -> str | None:
    """Why an opened image is refused for its format (a PNG named .jpg in Caltech-256), or None: the one rule that
    inspection and preparation both apply."""
    if formats is not None and image.format not in formats:
        return f"not a {' or '.join(formats)} (format {image.format})"
    return None


def wide_mode(mode: str | None) -> bool:
    """Whether a Pillow mode holds more than 8 bits per pixel in one channel (I;16, I;16B, ..., I, F): preparation
    scales such an image to 8 bits by its own range (prepare.images.eight_bits)."""
    return mode is not None and (mode in ("I", "F") or mode.startswith("I;"))


def check_image(path: str, formats: tuple[str, ...] | None = None) -> tuple[str | None, str | None]:
    """(PIL mode, None) if the file decodes fully and is of an accepted format, else (None, reason)."""
    from PIL import Image

    try:
        if os.path.getsize(path) == 0:
            return None, "zero-byte file"
        with Image.open(path) as image:
            refused = format_problem(image, formats)
            if refused:
                return None, refused
            image.load()  # open() only reads the header; load() decodes, which catches truncation
            return image.mode, None
    except Exception as error:  # any decoder failure is a finding, not a crash
        return None, f"{type(error).__name__}: {error}"


def check_images(paths: list[str], workers: int = 1, formats: tuple[str, ...] | None = None
                 ) -> list[tuple[str | None, str | None]]:
    """`check_image` of every path, in order; `workers` > 1 decodes in that many processes."""
    check = functools.partial(check_image, formats=formats)
    if workers <= 1:
        return [check(path) for path in paths]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(check, paths, chunksize=64))


def count_stats(counts: list[int]) -> dict:
    """min / median / max of per-class image counts (0 for none)."""
    return {"min": min(counts, default=0), "median": statistics.median(counts) if counts else 0,
            "max": max(counts, default=0)}


def decode_findings(root: Path, paths: list[str], workers: int = 1, formats: tuple[str, ...] | None = None) -> dict:
    """{"modes": PIL mode -> images, "undecodable": [{"path", "reason"}]} for `paths` relative to `root`; `formats`:
    those preparation accepts (None: any), so inspection counts what preparation will skip."""
    results = check_images([str(Path(root) / p) for p in paths], workers, formats)
    modes: dict[str, int] = {}
    for mode, _ in results:
        if mode is not None:
            modes[mode] = modes.get(mode, 0) + 1
    return {"modes": dict(sorted(modes.items())),
            "undecodable": [{"path": p, "reason": reason} for p, (_, reason) in zip(paths, results)
                            if reason is not None]}


def decode_lines(report: dict) -> list[str]:
    """The text lines of a report's decoding findings (or that it did not decode)."""
    if not report["decoded"]:
        return ["images not decoded (decode=False)"]
    modes = ", ".join(f"{mode} {count}" for mode, count in report["modes"].items()) or "none"
    wide = [mode for mode in report["modes"] if wide_mode(mode)]
    return [f"decoded image modes: {modes} (decode with an explicit conversion to RGB)",
            *([f"  {', '.join(wide)}: more than 8 bits per pixel, scaled to 8 bits by each image's own range at "
               "preparation (a constant one is skipped)"] if wide else []),
            f"images that fail to decode (skipped at preparation): {len(report['undecodable'])}",
            *(f"  {item['path']}: {item['reason']}" for item in report["undecodable"])]
