"""How many torch threads a run uses while other processes share its cores.

Why: a multi-threaded torch step on the CPU is a chain of short parallel regions, and a region ends only when each
of its threads has run its part. When other processes hold the cores, a thread that is ready waits for the
scheduler's next slice, at every region: a step gets many times slower, not twice (bf16 on AMX, with its many
short regions, worst of all; benchmarks/README.md: shared cores). A single thread has no region to wait for. So a
run uses its `threads` while its cores are free, and fewer while other processes keep them busy:

    >>> share = CoreShare(most=2)
    >>> for batch in batches:
    ...     share.check()        # cheap: looks at the machine once per `interval` seconds
    ...     step(batch)

What other processes use is the CPU time of the run's cores (/proc/stat, or the cgroup's own counter where a CPU
quota binds) less this process's own. Elsewhere (macOS, Windows) the count stays as it is.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

# Other processes' use of the cores, in cores, at which a run gives up a thread, and below which (for
# CALM_CHECKS checks in a row) it takes one back: apart, so that a run does not flip at every check.
BUSY, CALM, CALM_CHECKS = 0.5, 0.25, 2
CGROUP = Path("/sys/fs/cgroup")


def affinity_cores() -> list[int]:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def cgroup_quota() -> float | None:
    """The cores a cgroup (v2) CPU quota allows this process, or None where there is none."""
    try:
        quota, period = (CGROUP / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def usable_cores() -> float:
    """The cores this process may use: its CPU affinity, or a smaller cgroup quota (a container, a Slurm job)."""
    quota = cgroup_quota()
    cores = len(affinity_cores())
    return min(cores, quota) if quota else float(cores)


def load_warning() -> str:
    """One line when the machine is already loaded beyond the cores this process may use (Linux's load average over
    the last minute), with the advice; "" when it is not."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    cores = usable_cores()
    if load <= cores:
        return ""
    return (f"this machine is loaded: load average {load:.1f} on {cores:g} cores, so other work is running; runs "
            "take fewer threads while it does (fit_threads) and train slower than alone: run when it is quiet, or "
            "give this run fewer cores (threads=1)")


def busy_seconds() -> float | None:
    """CPU seconds spent so far, by every process, on this process's cores (or in its cgroup where a quota binds:
    the quota, not the machine's cores, is what other processes take from it); None where it cannot be read."""
    quota = cgroup_quota()
    if quota is not None and quota < len(affinity_cores()):
        try:
            fields = dict(line.split() for line in (CGROUP / "cpu.stat").read_text().splitlines())
            return int(fields["usage_usec"]) / 1e6
        except (OSError, KeyError, ValueError):
            return None
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    mine, ticks, total = {f"cpu{n}" for n in affinity_cores()}, os.sysconf("SC_CLK_TCK"), 0
    for line in lines:
        name, *values = line.split()
        if name in mine:
            counts = [int(v) for v in values]
            total += sum(counts[:8]) - counts[3] - counts[4]  # all but idle and iowait (guest is within user)
    return total / ticks


def own_seconds() -> float:
    """CPU seconds this process (all its threads) has spent."""
    times = os.times()
    return times.user + times.system


class CoreShare:
    """Fits torch's thread count to the cores other processes leave free: at most `most`, at least 1. `most=0`:
    off (the count is left as it is: a GPU run, or fit_threads=false)."""

    def __init__(self, most: int, interval: float = 1.0, *, busy=busy_seconds, own=own_seconds, clock=time.monotonic,
                 set_threads=None):
        import torch

        self.most, self.interval = most, interval
        self._busy, self._own, self._clock = busy, own, clock
        self._set = set_threads or torch.set_num_threads
        self.cores = usable_cores()
        self.threads, self.calm, self.steps = most, 0, {}
        self._last = self._sample() if most > 1 else None
        if most:
            self._set(most)  # an earlier run in this process may have left fewer

    def paced(self, batches):
        """`batches`, with the thread count checked before each one."""
        for batch in batches:
            self.check()
            yield batch

    def record(self) -> dict:
        """For result.json: the run's thread count, and how many steps ran at each count where it changed."""
        if self.most == 0:
            import torch

            return {"threads": torch.get_num_threads()}
        varied = len(self.steps) > 1 or self.threads != self.most
        return {"threads": self.most, **({"threads_fitted": dict(sorted(self.steps.items()))} if varied else {})}

    def _sample(self):
        busy = self._busy()
        return None if busy is None else (self._clock(), busy, self._own())

    def check(self) -> int:
        """The thread count for the next step (counted in `steps`): adjusted when `interval` has passed since the
        last look."""
        if self._last is not None and self._clock() - self._last[0] >= self.interval:
            self._look()
        self.steps[self.threads] = self.steps.get(self.threads, 0) + 1
        return self.threads

    def _look(self) -> None:
        now = self._sample()
        if now is None:
            return
        others = self.others(self._last, now)
        self._last = now
        self.calm = self.calm + 1 if others < CALM else 0
        if others >= BUSY:
            wanted = max(1, min(self.most, int(self.cores - others + 0.5)))
        else:
            wanted = self.most if self.calm >= CALM_CHECKS else self.threads
        if wanted != self.threads:
            self.threads = wanted
            self._set(wanted)

    @staticmethod
    def others(before, after) -> float:
        """Cores other processes kept busy between two samples (clock, busy seconds, own seconds)."""
        wall = after[0] - before[0]
        if wall <= 0:
            return 0.0
        return max(0.0, ((after[1] - before[1]) - (after[2] - before[2])) / wall)
