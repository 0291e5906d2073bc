"""Files written atomically get the mode a plain open() gives (0666 less the umask), so that a group can read an
experiment's results where the umask lets it."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from audio2image.util import atomic_write_text, write_json


@pytest.fixture
def umask():
    """Set the process's umask for a test; the previous one is restored after it."""
    previous = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_follow_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    atomic_write_text(tmp_path / "report.md", "# report\n")
    write_json(tmp_path / "result.json", {"status": "completed"})
    with open(tmp_path / "plain.txt", "w") as handle:  # what the atomic writes must match
        handle.write("x")
    assert mode(tmp_path / "report.md") == mode(tmp_path / "result.json") == mode(tmp_path / "plain.txt") == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.txt", "report.md", "result.json"]  # no leftovers


def test_a_file_made_0600_by_an_earlier_version_gets_the_umasks_mode_when_rewritten(tmp_path, umask):
    """Results written as 0600 by earlier versions become readable when the sweep rewrites them."""
    path = tmp_path / "results.csv"
    path.write_text("old\n")
    path.chmod(0o600)
    umask(0o022)
    atomic_write_text(path, "new\n")
    assert mode(path) == 0o644 and path.read_text() == "new\n"


def test_torch_checkpoints_follow_the_umask(tmp_path, umask):
    import torch

    from audio2image.training.saving import _save

    umask(0o027)
    _save(tmp_path / "best.pt", {"model": {"w": torch.zeros(2)}})
    assert mode(tmp_path / "best.pt") == 0o640


@pytest.mark.slow
def test_a_sweeps_files_follow_the_umask_and_a_moved_cache_retrains_nothing(tmp_path, umask):
    """A tiny sweep under umask 0022: every file it writes is 0644. Its cache moved elsewhere and the sweep run
    again under 0077: every store and run is found (nothing prepared or trained again), and what it rewrites is
    0600."""
    from audio2image.config import load_config
    from audio2image.report.report import build_report
    from audio2image.sweep import run_sweep

    tiny = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"
    overrides = [f"out_dir={tmp_path / 'runs'}", "fractions=1.0", "seeds=0", "transfer_epochs=1", "cka_items=4"]
    umask(0o022)
    config = load_config(tiny, [*overrides, f"data_dir={tmp_path / 'cache'}"])
    run_sweep(config)
    build_report(config.experiment_dir)
    made = {path: (mode(path), path.stat().st_mtime_ns) for path in tmp_path.rglob("*") if path.is_file()}
    names = {path.name for path in made}
    assert {"results.csv", "report.md", "report.html", "config.yaml", "best.pt", "result.json", "cka.json"} <= names
    assert {path.name for path, (kept, _) in made.items() if kept != 0o644} == set()

    (tmp_path / "cache").rename(tmp_path / "moved")
    umask(0o077)
    again = load_config(tiny, [*overrides, f"data_dir={tmp_path / 'moved'}"])
    assert run_sweep(again)["finished"] == 2
    build_report(again.experiment_dir)
    moved = {Path(str(path).replace(str(tmp_path / "cache"), str(tmp_path / "moved"))): value
             for path, value in made.items()}
    runs = [path for path in moved if path.name in ("result.json", "best.pt")]
    assert runs and all(path.stat().st_mtime_ns == moved[path][1] for path in runs)  # none trained again
    stores = [path for path in moved if path.name == "manifest.json"]
    assert len(stores) == 2 and all(path.exists() for path in stores)  # none prepared again
    for name in ("results.csv", "report.md", "report.html"):
        assert mode(again.experiment_dir / name) == 0o600, name
    assert all(mode(path) == 0o644 for path in runs)  # as they were made
