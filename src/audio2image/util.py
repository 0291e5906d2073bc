"""Small helpers shared by every stage: atomic writes, JSON files, progress bars, a quick process exit."""
from __future__ import annotations

import atexit
import gc
import json
import os
import secrets
import sys
from contextlib import contextmanager
from pathlib import Path

from audio2image.errors import UserError


class Busy(RuntimeError):
    """Another process holds the lock: `holder` says who ("host pid")."""

    def __init__(self, path: Path, holder: str):
        super().__init__(f"{path} is held by {holder or 'another process'}")
        self.holder = holder


@contextmanager
def file_lock(path: Path, wait: bool = True):
    """Hold an exclusive lock on `path` for the block: one owner per run or store among processes and machines
    sharing a folder. fcntl.flock, so the OS releases it when its holder dies, even by SIGKILL: a crashed owner
    never blocks the others. The file names its holder ("host pid") for messages. With wait=False, Busy is raised
    at once instead of waiting. Not re-entrant: a process must not take the same lock twice."""
    import fcntl
    import socket

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.seek(0)
            raise Busy(path, handle.read().strip()) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{socket.gethostname()} {os.getpid()}\n")
        handle.flush()
        yield


@contextmanager
def atomic_path(path: Path):
    """Yield a temporary path beside `path`; it replaces `path` only if the block finishes.

    A reader therefore sees either the old file or the complete new one, never a partial write,
    even when the process is killed mid-write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temporary(path)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _new_temporary(path: Path) -> str:
    """Create an empty, unused file beside `path` and return its name. Created with mode 0666 and the umask, as a
    plain open() creates a file: tempfile.mkstemp's 0600 would make every result unreadable to the group and others
    that the umask lets read (it also replaces a file that had the umask's mode)."""
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return str(tmp)
        except FileExistsError:
            continue


def atomic_write_text(path: Path, text: str, sync: bool = True) -> None:
    """Replace `path` with `text` atomically; with `sync`, on disk before the rename (survives a power cut too,
    at the cost of an fsync: tens of ms on some virtual disks)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as handle:
            handle.write(text)
            handle.flush()
            if sync:
                os.fsync(handle.fileno())


def write_json(path: Path, value, sync: bool = True, indent: int | None = 2) -> None:
    """`value` as JSON in `path`, atomically; indent=None for files only the tool reads, often: json's C encoder
    serves only unindented output (the indented one is pure Python, many times slower;
    benchmarks/README.md: progress files)."""
    atomic_write_text(path, json.dumps(value, indent=indent, sort_keys=False) + "\n", sync=sync)


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def read_json_or_none(path: Path):
    """The JSON value in `path`, or None when the file is absent, unreadable or not JSON (a torn write)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


class DatasetError(UserError, ValueError):
    """A dataset that cannot be used as given; the message names the file (and line) and what to do."""


def progress(iterable=None, *, enabled: bool = True, **kwargs):
    """A tqdm bar on stderr; silent when disabled or when stderr is not a terminal and CI asks for quiet."""
    from tqdm.auto import tqdm

    disable = not enabled or os.environ.get("AUDIO2IMAGE_QUIET") == "1"
    return tqdm(iterable, disable=disable, file=sys.stderr, dynamic_ncols=True, mininterval=1.0, **kwargs)


@contextmanager
def batch_bar(batches, *, total: int, desc: str, enabled: bool = True, stream=None):
    """`batches` with a progress bar and its ETA on `stream` (default stderr) while the block runs, only where
    someone watches: `stream` a terminal. Logs, CI and tests (not terminals) get the batches alone and nothing
    written: a bar redrawn into a file is noise. The bar is cleared at the end, so the lines logged after it read
    as before."""
    stream = sys.stderr if stream is None else stream
    if not (enabled and stream.isatty()) or os.environ.get("AUDIO2IMAGE_QUIET") == "1":
        yield batches
        return
    from tqdm import tqdm

    with tqdm(batches, total=total, desc=desc, file=stream, leave=False, dynamic_ncols=True, mininterval=0.5,
              unit="batch") as bar:
        yield bar


def log(message: str) -> None:
    """One line of progress for the user, on stderr so that stdout stays for results."""
    print(message, file=sys.stderr, flush=True)


def skip_exit_collection() -> None:
    """Leave this process's objects to the operating system at exit instead of a last garbage collection.

    Python's final collection walks every live object, and a process that has imported torch and timm holds
    millions: that walk is a noticeable pause at the end of every CLI call and every run's worker process
    (benchmarks/README.md). Nothing of ours waits on it: every file and checkpoint is closed and written before a
    job returns. Registered by the entry points the project owns (the CLI, a job run in a worker), not on import,
    so a user's own script keeps Python's usual exit."""
    global _EXIT_COLLECTION_SKIPPED
    if not _EXIT_COLLECTION_SKIPPED:
        atexit.register(gc.freeze)
        _EXIT_COLLECTION_SKIPPED = True


_EXIT_COLLECTION_SKIPPED = False
