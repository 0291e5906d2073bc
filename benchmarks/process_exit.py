"""What a process of the project pays to end: Python's exit against the project's (util.skip_exit_collection).

Each variant is a fresh interpreter that imports the training stack (`audio2image.sweep`: torch, timm and the
project) and ends, timed from start to end, fastest of `--rounds`:
  - python: Python's usual exit (its last garbage collection walks every object the imports made);
  - project: the same after `skip_exit_collection()`, as the CLI and every job in a worker process do;
  - floor: `os._exit(0)` after the imports, which skips all of exit (no atexit, no flushing): what starting costs.
Every CLI call, pool worker, Ray worker and Slurm job starts and ends such a process once.

Run: .venv/bin/python benchmarks/process_exit.py [--rounds 5]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time

IMPORTS = "import os\nimport audio2image.sweep\n"
VARIANTS = {
    "python": IMPORTS,
    "project": IMPORTS + "from audio2image.util import skip_exit_collection\nskip_exit_collection()\n",
    "floor": IMPORTS + "os._exit(0)\n",
}


def seconds(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    seconds(IMPORTS)  # the first start reads the files from disk
    times = {name: [] for name in VARIANTS}
    for _ in range(args.rounds):  # interleaved, so drift touches every variant alike
        for name, code in VARIANTS.items():
            times[name].append(seconds(code))
    best = {name: min(values) for name, values in times.items()}
    for name, value in best.items():
        print(f"{name}: {value:.2f} s (rounds {', '.join(f'{v:.2f}' for v in times[name])})")
    floor = best["floor"]
    print(f"process_exit: exit after the imports {best['project'] - floor:.2f} s with the project's, "
          f"{best['python'] - floor:.2f} s with Python's; whole process project / python = "
          f"{best['project'] / best['python']:.2f}")


if __name__ == "__main__":
    main()
