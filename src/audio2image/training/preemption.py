"""SIGTERM, what Slurm (and most schedulers) send before they kill or preempt a job: a run finishes its step,
writes a consistent checkpoint and exits, so the same command (or the requeued job) resumes it.

The handler is installed only while a run trains (`handling`), in the main thread, and the previous one restored
after: idle pool or Ray worker processes keep the default behaviour, so their executors can still stop them.

    >>> with handling():
    ...     train()  # polls requested() after each step
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

EXIT_CODE = 128 + signal.SIGTERM  # what a process killed by SIGTERM reports: the scheduler sees the same
_REQUESTED = threading.Event()


class Preempted(SystemExit):
    """Raised once a run has written its checkpoint after SIGTERM; exits with EXIT_CODE."""

    def __init__(self, message: str):
        super().__init__(EXIT_CODE)
        self.message = message


def requested() -> bool:
    return _REQUESTED.is_set()


@contextmanager
def handling():
    """SIGTERM only sets the flag `requested()` reads while the block runs (where signals can be handled)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: _REQUESTED.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
