"""One owner per run: the lock a run's process holds, named to another process (two whole sweeps on one folder:
test_sweep.py)."""
from __future__ import annotations

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
