import os
import sys
from pathlib import Path

# Under pytest-xdist (`make test` runs `pytest -n auto`), each worker owns its share of the cores: pinned to them,
# with torch and OpenMP threads to match, and so are the sweeps and pools it starts. Two torch jobs on the same
# cores slow each other 4-5x; on their own cores they do not.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
if _WORKER.startswith("gw") and hasattr(os, "sched_setaffinity"):
    _cores = sorted(os.sched_getaffinity(0))
    _count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    _mine = _cores[int(_WORKER[2:]) % len(_cores)::max(1, min(_count, len(_cores)))]
    os.sched_setaffinity(0, _mine)
    os.environ["OMP_NUM_THREADS"] = str(len(_mine))  # before torch is imported

# Test helpers (tiny stores, the local HTTP server) live beside the tests.
sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("AUDIO2IMAGE_QUIET", "1")
# Tests run from the repository root so that configs/ resolves.
os.chdir(Path(__file__).resolve().parents[1])


def pytest_collection_modifyitems(session, config, items):
    """Under xdist, each worker's share starts with its part of the slow tests (whole sweeps, subprocesses).

    worksteal hands each worker a contiguous block of the collection, and an idle worker steals only tests not
    started: with the slow tests where they fall, one worker could get several and run them one after the other
    at the end (measured: the suite's tail was such a test). So the slow tests are dealt round-robin, each
    worker's block opening with its own; fast tests fill the rest. Slow tests of one module that read the same
    module-scoped fixture (one sweep, asked several questions) are dealt together: on two workers, each would
    build it. Every worker computes the same order."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers < 2:
        return
    units = _units([item for item in items if item.get_closest_marker("slow")])
    fast = [item for item in items if not item.get_closest_marker("slow")]
    blocks = [[item for unit in units[k::workers] for item in unit] for k in range(workers)]
    share = (len(items) + workers - 1) // workers  # what worksteal sends each worker first
    for block in blocks:
        while len(block) < share and fast:
            block.append(fast.pop(0))
    items[:] = [item for block in blocks for item in block] + fast


def _units(slow: list) -> list[list]:
    """The slow tests in collection order, those of a module sharing its module-scoped fixtures in one unit."""
    units = {}  # in the order of each unit's first test
    for item in slow:
        shared = tuple(sorted(name for name, defs in item._fixtureinfo.name2fixturedefs.items()
                              if defs and defs[-1].scope == "module"))
        key = (item.nodeid.split("::")[0], shared) if shared else item.nodeid
        units.setdefault(key, []).append(item)
    return list(units.values())
