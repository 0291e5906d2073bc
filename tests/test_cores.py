"""A run's threads fitted to the cores other processes leave free (training/cores.py): what it measures, when it
gives up threads and takes them back, and what result.json records."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from audio2image.training import cores
from audio2image.training.cores import CoreShare


class Machine:
    """A fake clock and CPU counters: `advance(seconds, others)` lets time pass while other processes keep
    `others` cores busy and this one keeps `mine` busy."""

    def __init__(self, mine: float = 1.0):
        self.now, self.busy, self.own, self.mine = 0.0, 0.0, 0.0, mine

    def advance(self, seconds: float, others: float) -> None:
        self.now += seconds
        self.busy += (others + self.mine) * seconds
        self.own += self.mine * seconds


def share_on(machine: Machine, monkeypatch, most: int = 2, cores_: float = 2.0):
    monkeypatch.setattr(cores, "usable_cores", lambda: cores_)
    counts = []
    share = CoreShare(most, busy=lambda: machine.busy, own=lambda: machine.own, clock=lambda: machine.now,
                      set_threads=counts.append)
    return share, counts


def test_a_run_gives_up_a_thread_while_others_busy_its_cores_and_takes_it_back_when_calm(monkeypatch):
    machine = Machine()
    share, counts = share_on(machine, monkeypatch)
    assert counts == [2] and share.check() == 2  # its full count at the start
    machine.advance(0.5, others=1.0)
    assert share.check() == 2  # not looked yet: under a second since the last look
    machine.advance(0.6, others=1.0)
    assert share.check() == 1 and counts == [2, 1]
    machine.advance(1.0, others=0.1)
    assert share.check() == 1  # one calm second is not enough
    machine.advance(1.0, others=0.1)
    assert share.check() == 2 and counts == [2, 1, 2]
    record = share.record()
    assert record["threads"] == 2 and record["threads_fitted"] == {1: 2, 2: 3}


def test_light_work_beside_it_changes_nothing(monkeypatch):
    machine = Machine()
    share, counts = share_on(machine, monkeypatch)
    for _ in range(5):
        machine.advance(1.1, others=0.3)  # a browser, an editor
        share.check()
    assert counts == [2] and share.record() == {"threads": 2}


def test_off_leaves_the_count_alone(monkeypatch):
    machine = Machine()
    share, counts = share_on(machine, monkeypatch, most=0)
    machine.advance(2.0, others=2.0)
    share.check()
    assert counts == [] and "threads_fitted" not in share.record()


def test_a_cgroup_quota_bounds_the_cores(tmp_path, monkeypatch):
    monkeypatch.setattr(cores, "CGROUP", tmp_path)
    monkeypatch.setattr(cores, "affinity_cores", lambda: [0, 1, 2, 3])
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cores.usable_cores() == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cores.usable_cores() == 4


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="reads Linux's /proc/stat")
def test_another_process_on_the_same_cores_is_seen():
    """The real counters: a process spinning on this process's cores shows as other processes' use."""
    def sample():
        return time.monotonic(), cores.busy_seconds(), cores.own_seconds()

    quiet_start = sample()
    time.sleep(1.0)
    quiet = CoreShare.others(quiet_start, sample())
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        start = sample()
        time.sleep(1.5)
        busy = CoreShare.others(start, sample())
    finally:
        spinner.kill()
        spinner.wait()
    assert busy > quiet + 0.4  # the spinner holds about one of these cores (all of it, if there is one)
