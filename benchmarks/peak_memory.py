"""Peak memory of a command and all its descendants (pool workers, forkservers), sampled from /proc.

Every 0.1 s it sums over the command's process tree:
  - RssAnon: anonymous resident memory (heaps, arrays): what the processes themselves hold;
  - VmRSS: all resident memory, including file pages mapped by the processes (shared libraries, and the
    memory-mapped store being written, which the kernel can drop at will); shared pages count once per process.
It prints both peaks and the wall time. Linux only.

Run: .venv/bin/python benchmarks/peak_memory.py -- .venv/bin/audio2image prepare mtat ROOT OUT --split full --workers 2
"""
from __future__ import annotations

import os
import subprocess
import sys
import time


def tree(pid: int) -> list[int]:
    """`pid` and all its descendants alive now."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as handle:
                    todo += [int(child) for child in handle.read().split()]
        except OSError:  # the process ended while we looked
            pass
    return found


def resident_kib(pids: list[int]) -> dict[str, int]:
    totals = {"RssAnon": 0, "VmRSS": 0}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as handle:
                for line in handle:
                    key = line.split(":", 1)[0]
                    if key in totals:
                        totals[key] += int(line.split()[1])
        except OSError:
            pass
    return totals


def main() -> None:
    command = sys.argv[1:]
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        sys.exit(__doc__)
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    peaks = {"RssAnon": 0, "VmRSS": 0}
    while process.poll() is None:
        for key, value in resident_kib(tree(process.pid)).items():
            peaks[key] = max(peaks[key], value)
        time.sleep(0.1)
    seconds = time.perf_counter() - start
    print(f"exit status {process.returncode}, {seconds:.1f} s")
    print(f"peak VmRSS of the process tree: {peaks['VmRSS'] / 1024:.0f} MiB")
    print(f"peak RssAnon of the process tree: {peaks['RssAnon'] / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
