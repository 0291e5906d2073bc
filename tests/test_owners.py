"""One owner per run: sweeps in several processes share one experiment folder (a file of its own, so that
pytest-xdist runs it beside test_sweep.py's other whole-sweep tests)."""
from __future__ import annotations

import json

import pytest

from test_sweep import _rows_without_ids, _sweep
from audio2image.util import file_lock


def test_a_lock_names_its_holder_and_is_released_with_the_block(tmp_path):
    import subprocess
    import sys

    lock = tmp_path / "run" / ".lock"
    with file_lock(lock):
        other = subprocess.run([sys.executable, "-c", "import sys; from audio2image.util import file_lock, Busy\n"
                                f"try:\n    with file_lock({str(lock)!r}, wait=False): sys.exit(0)\n"
                                "except Busy as error:\n    print(error.holder); sys.exit(3)"],
                               capture_output=True, text=True)
        assert other.returncode == 3 and str(__import__("os").getpid()) in other.stdout
    with file_lock(lock, wait=False):  # released: taken again at once
        pass


@pytest.mark.slow
def test_two_sweeps_on_one_folder_train_each_run_once(tmp_path):
    """Two sweep processes started together on one experiment folder (and one data_dir): every run, pretraining
    included, is trained by one of them, no epoch line is written twice, and the table is one process's."""
    few = ("transfer_epochs=1", "cka_items=0")
    alone = _sweep(tmp_path / "alone", tmp_path / "data-alone", *few)
    assert alone.wait(timeout=600) == 0
    both = [_sweep(tmp_path / "shared", tmp_path / "data-shared", *few) for _ in range(2)]
    assert [process.wait(timeout=600) for process in both] == [0, 0]
    runs = [*(tmp_path / "shared" / "tiny" / "transfer").iterdir(),
            *(tmp_path / "shared" / "tiny" / "pretrain").iterdir()]
    assert len(runs) == 9
    for run in runs:
        epochs = [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert epochs == sorted(set(epochs)) and epochs[0] == 1, run
    assert _rows_without_ids(tmp_path / "shared" / "tiny" / "results.csv") == \
        _rows_without_ids(tmp_path / "alone" / "tiny" / "results.csv")


