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
_RECEIVED: list[int] = []  # the signals that came
_PREVIOUS: dict[int, object] = {}  # their handlers before the run's: a job manager's (submitit) gets them after


class Preempted(SystemExit):
    """Raised once a run has written its checkpoint after SIGTERM; exits with EXIT_CODE."""

    def __init__(self, message: str):
        super().__init__(EXIT_CODE)
        self.message = message


def requested() -> bool:
    return _REQUESTED.is_set()


def _watched() -> list[int]:
    """SIGTERM, and SIGUSR2 where a job manager handles it (submitit's preemption and timeout signal)."""
    usr2 = getattr(signal, "SIGUSR2", None)
    managed = usr2 is not None and signal.getsignal(usr2) not in (signal.SIG_DFL, signal.SIG_IGN, None)
    return [signal.SIGTERM, *([usr2] if managed else [])]


def _note(signum, frame) -> None:
    _RECEIVED.append(signum)
    _REQUESTED.set()


@contextmanager
def handling():
    """While the block runs, SIGTERM (and a job manager's SIGUSR2) only set the flag `requested()` reads."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    for signum in _watched():
        _PREVIOUS[signum] = signal.signal(signum, _note)
    try:
        yield
    finally:
        for signum, previous in _PREVIOUS.items():
            signal.signal(signum, previous)
        _PREVIOUS.clear()


def hand_over() -> None:
    """Once the checkpoint is written: give each signal that came to the handler it had before the run (submitit
    then requeues the job, which resumes from that checkpoint, and exits)."""
    for signum in dict.fromkeys(_RECEIVED):
        previous = _PREVIOUS.get(signum)
        if callable(previous):
            previous(signum, None)
