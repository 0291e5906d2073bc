"""The files a run reads back (result.json, best.pt, checkpoint.pt), checked before use.

A run killed mid-write, a full disk or a copy cut short leaves a file that does not load. Every such file is set
aside (renamed to NAME.damaged, never deleted: it may be evidence) with a one-line warning naming it, and the run
goes on as if it were absent: a damaged checkpoint restarts the run, a finished run whose best weights are damaged
is redone. torch checkpoints are zip archives with their directory at the end, so a truncated or half-written one
is told in a millisecond by reading that directory, without loading its tensors.
"""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

from audio2image.util import log

DAMAGED = ".damaged"


def whole_archive(path: Path) -> bool:
    """Whether `path` is a torch checkpoint whose zip directory reads (a truncated file's does not)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return bool(archive.namelist())
    except (OSError, zipfile.BadZipFile, ValueError):
        return False


def set_aside(path: Path, why: str) -> Path:
    """Rename a damaged file to NAME.damaged (replacing an older one) and say so in one line."""
    path = Path(path)
    target = path.with_name(path.name + DAMAGED)
    try:
        os.replace(path, target)
    except FileNotFoundError:  # another process of the run (DDP) set it aside first
        return target
    log(f"warning: {path} {why}; set aside as {target.name}")
    return target


def finished_result(run_dir: Path) -> dict | None:
    """A finished run's result.json, or None when the run must (still or again) be trained: no result, a result
    that does not read, or a completed one whose best.pt is missing or damaged (then both are set aside)."""
    result, problem = _read_finished(Path(run_dir))
    best = Path(run_dir) / "best.pt"
    if problem == UNREADABLE:
        set_aside(Path(run_dir) / "result.json", "does not read as JSON; the run is redone")
    elif problem == NO_BEST:
        if best.exists():
            set_aside(best, "is damaged (not a whole checkpoint); the finished run is redone")
        set_aside(Path(run_dir) / "result.json", "belongs to a run without its best weights; the run is redone")
    return result


def peek_finished(run_dir: Path) -> dict | None:
    """What `finished_result` returns, without setting anything aside: for a plan, which reads and never writes."""
    return _read_finished(Path(run_dir))[0]


UNREADABLE, NO_BEST = "unreadable", "no best weights"


def _read_finished(run_dir: Path) -> tuple[dict | None, str]:
    """(result.json's content or None, what is wrong with the finished run: "", UNREADABLE or NO_BEST)."""
    path = run_dir / "result.json"
    if not path.is_file():
        return None, ""
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        return None, UNREADABLE
    if result.get("status") == "completed" and not whole_archive(run_dir / "best.pt"):
        return None, NO_BEST
    return result, ""


def usable_checkpoint(run_dir: Path) -> bool:
    """Whether an unfinished run can resume: a whole checkpoint.pt, and its best.pt whole where there is one. A
    damaged one of them is set aside (with the other: a checkpoint counts best weights that must be on disk)."""
    checkpoint, best = Path(run_dir) / "checkpoint.pt", Path(run_dir) / "best.pt"
    if not checkpoint.exists():
        return False
    damaged = [p for p in (checkpoint, best) if p.exists() and not whole_archive(p)]
    if not damaged:
        return True
    for path in (checkpoint, best):
        if path.exists():
            set_aside(path, "is damaged (not a whole checkpoint)" if path in damaged else
                      "goes with a damaged checkpoint")
    log(f"warning: {run_dir} starts over")
    return False


def read_checkpoint(path: Path):
    """A run's torch file (best.pt, checkpoint.pt) as data, on the CPU, with the model's float16 tensors (those of
    a finished transfer run's best.pt: saving.half_weights) back in float32, as the run trained them."""
    import torch

    value = torch.load(path, map_location="cpu", weights_only=True)
    model = value.get("model") if isinstance(value, dict) else None
    if isinstance(model, dict):
        value["model"] = {key: tensor.float() if isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float16
                          else tensor for key, tensor in model.items()}
    return value
